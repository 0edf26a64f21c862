"""The Kalman filter and Rauch-Tung-Striebel smoother, with each Bayes update a BLR step.

    from blrlib.infer import kalman_smoother
    means, covs = kalman_smoother(a, q_cov, c, r_var, m0, p0, y)   # (T, d), (T, d, d)
    # equal to blrlib.linear_gaussian.ssm_dense_posterior(...), in O(T d^3) instead of O(T^3 d^3)

Sec 5.1 of Khan & Rue (2023): the BLR gives the posterior of a conjugate model but "does not
offer any advice to obtain marginal properties"; message passing does. Here each measurement
update, p(x_t | y_1..t) from p(x_t | y_1..t-1), is conjugate Bayes and is computed as one BLR
step with rho = 1 (``blrlib.conjugate.posterior``, Eq 54). The prediction step and the RTS
backward pass are marginalisation (integrating out x_{t-1} or x_{t+1}), which the BLR does not
cover, so they are the usual Gaussian identities (Rauch, Tung and Striebel, 1965).

Derived in :ref:`conj-gp-ssm`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from blrlib import conjugate
from blrlib.families import Gaussian

__all__ = ["kalman_filter", "kalman_smoother"]


def _check(name: str, value: object, shape: tuple[int, ...]) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}")
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return value


def kalman_filter(
    a: Tensor, q_cov: Tensor, c: Tensor, r_var: Tensor, m0: Tensor, p0: Tensor, y: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Filtering distributions p(x_t | y_1..y_t) of x_1 ~ N(m0, P0), x_t = A x_{t-1} + N(0, Q),
    y_t = C x_t + N(0, diag(r_var)).

    Args:
        a, q_cov: A and Q, (d, d).
        c, r_var: C (o, d) and the observation noise variances (o,).
        m0, p0: the prior of x_1.
        y: observations (T, o).

    Returns:
        Filtered means (T, d) and covariances (T, d, d), and the predicted ones (T, d),
        (T, d, d) (the predicted x_1 is the prior).

    Raises:
        TypeError, ValueError: wrong shapes or non-finite inputs (naming the argument).
    """
    if not isinstance(y, Tensor) or y.dim() != 2:
        raise ValueError("y must be a tensor of shape (T, o)")
    n_steps, o = y.shape
    d = m0.shape[0] if isinstance(m0, Tensor) else -1
    for name, value, shape in (
        ("a", a, (d, d)),
        ("q_cov", q_cov, (d, d)),
        ("c", c, (o, d)),
        ("r_var", r_var, (o,)),
        ("m0", m0, (d,)),
        ("p0", p0, (d, d)),
        ("y", y, (n_steps, o)),
    ):
        _check(name, value, shape)
    q = Gaussian(d, dtype=m0.dtype, device=m0.device)
    lik = conjugate.GaussianLikelihood(r_var, design=c)
    means, covs, pred_means, pred_covs = [], [], [], []
    m, p = m0, p0
    for t in range(n_steps):
        pred_means.append(m)
        pred_covs.append(p)
        prior = q.natural_from_mean_precision(m, torch.linalg.inv(p))
        m, p = q.mean_cov(conjugate.posterior(q, prior, lik, y[t]))  # update: Eq 54
        means.append(m)
        covs.append(p)
        m, p = a @ m, a @ p @ a.T + q_cov  # predict: marginalise x_t
    return (torch.stack(means), torch.stack(covs), torch.stack(pred_means), torch.stack(pred_covs))


def kalman_smoother(
    a: Tensor, q_cov: Tensor, c: Tensor, r_var: Tensor, m0: Tensor, p0: Tensor, y: Tensor
) -> tuple[Tensor, Tensor]:
    """Smoothing marginals p(x_t | y_1..y_T): the Kalman filter, then the RTS backward pass.

    Arguments as in :func:`kalman_filter`.

    Returns:
        Means (T, d) and covariances (T, d, d), equal to the dense BLR posterior's marginals.
    """
    means, covs, pred_means, pred_covs = kalman_filter(a, q_cov, c, r_var, m0, p0, y)
    sm, sp = [means[-1]], [covs[-1]]
    for t in range(y.shape[0] - 2, -1, -1):
        gain = torch.linalg.solve(pred_covs[t + 1], a @ covs[t]).T  # P_t A^T P-_{t+1}^-1
        sm.append(means[t] + gain @ (sm[-1] - pred_means[t + 1]))
        sp.append(covs[t] + gain @ (sp[-1] - pred_covs[t + 1]) @ gain.T)
    return torch.stack(sm[::-1]), torch.stack(sp[::-1])
