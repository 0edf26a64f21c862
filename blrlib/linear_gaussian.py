"""Bigger conjugate models as one BLR step: Gaussian processes and linear-Gaussian state space.

    import torch
    from blrlib import linear_gaussian as lg
    x = torch.linspace(0, 5, 20, dtype=torch.float64)[:, None]
    k = lg.kernel(x, x, kind="matern12", length_scale=1.0)
    mean, std = lg.gp_posterior(k, y, noise_var=0.1, n_train=20)   # = GaussianProcessRegressor

Sec 5.1 of Khan & Rue (2023): Gaussian-process regression and the Kalman smoother are conjugate
models, so their posteriors are one BLR step with rho = 1 (Eq 54) on a Gaussian over all the
unknowns (function values; the whole state trajectory). The step is dense, O(P^3); the BLR says
what the answer is, and message passing (``blrlib.infer.kalman``) says how to get it in O(T).

Derived in :ref:`conj-gp-ssm`.
"""

from __future__ import annotations

from enum import Enum

import torch
from torch import Tensor

from blrlib import conjugate
from blrlib._checks import positive_float
from blrlib.estimators import parse_option
from blrlib.families import Gaussian, Params

__all__ = ["Kernel", "gp_posterior", "kernel", "ssm_dense_posterior", "ssm_prior"]


class Kernel(str, Enum):
    """``rbf``: exp(-r^2 / 2 l^2); ``matern12``: exp(-r / l) (the Ornstein-Uhlenbeck kernel)."""

    RBF = "rbf"
    MATERN12 = "matern12"


def kernel(
    x1: Tensor,
    x2: Tensor,
    *,
    kind: Kernel | str = Kernel.RBF,
    length_scale: float = 1.0,
    variance: float = 1.0,
) -> Tensor:
    """The covariance matrix k(x1_i, x2_j), shape (N1, N2), for inputs (N1, D) and (N2, D).

    Raises:
        ValueError: unknown ``kind``, non-positive ``length_scale`` or ``variance``.
    """
    kind = parse_option(kind, Kernel, "kind")
    ell = positive_float(length_scale, "length_scale")
    var = positive_float(variance, "variance")
    dist = torch.cdist(x1 / ell, x2 / ell)
    return var * (torch.exp(-0.5 * dist**2) if kind is Kernel.RBF else torch.exp(-dist))


def _check_matrix(mat: Tensor, shape: tuple[int, ...], name: str) -> None:
    if not isinstance(mat, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mat).__name__}")
    if tuple(mat.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(mat.shape)}")
    if not torch.isfinite(mat).all():
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")


def gp_posterior(
    cov: Tensor, y: Tensor, *, noise_var: float, n_train: int
) -> tuple[Tensor, Tensor, Params]:
    """GP regression as one BLR step on f = (f_train, f_test) ~ N(0, K) (Eq 54, rho = 1).

    The likelihood y_i ~ N(f_i, noise_var) touches the first ``n_train`` coordinates; its site
    terms (y_i e_i, -e_i e_i^T / 2) / noise_var come from the engine (autograd wrt mu).

    Args:
        cov: the prior covariance K over train then test points, (P, P), positive definite.
        y: training targets (n_train,).
        noise_var: the noise variance.
        n_train: the number of training points (the first rows of ``cov``).

    The prior enters through its precision K^-1 (natural parameters), so K must be well
    conditioned: smooth kernels (RBF) on points much closer than the length scale make K
    numerically singular; the Matern-1/2 kernel, or points spaced on the length scale, do not.

    Returns:
        (mean, std, lam): the posterior mean (P,) and marginal standard deviations (P,) of f,
        and the posterior natural parameters.
    """
    p = cov.shape[0] if isinstance(cov, Tensor) and cov.dim() == 2 else -1
    _check_matrix(cov, (p, p), "cov")
    _check_matrix(y, (n_train,), "y")
    chol, info = torch.linalg.cholesky_ex(cov)
    if info != 0:
        raise ValueError("cov must be symmetric positive definite (Cholesky failed)")
    q = Gaussian(p, dtype=cov.dtype, device=cov.device)
    prior = q.natural_from_mean_precision(torch.zeros_like(cov[0]), torch.cholesky_inverse(chol))
    design = torch.eye(p, dtype=cov.dtype, device=cov.device)[:n_train]
    lik = conjugate.GaussianLikelihood(positive_float(noise_var, "noise_var"), design=design)
    lam = conjugate.posterior(q, prior, lik, y)
    mean, post_cov = q.mean_cov(lam)
    return mean, torch.diagonal(post_cov).sqrt(), lam


def ssm_prior(a: Tensor, q_cov: Tensor, m0: Tensor, p0: Tensor, n_steps: int) -> Params:
    """Natural parameters of the prior over the trajectory x_1..x_T of a linear-Gaussian model.

    x_1 ~ N(m0, P0), x_t = A x_{t-1} + N(0, Q): the prior precision is block tridiagonal,
    J = blockdiag(P0^-1 + A^T Q^-1 A, ..., Q^-1) with off-diagonal blocks -Q^-1 A.

    Returns:
        lam = (J m, -J / 2) with J of shape (T d, T d), the trajectory stacked x_1 first.
    """
    d = a.shape[0]
    qi, p0i = torch.linalg.inv(q_cov), torch.linalg.inv(p0)
    j = torch.zeros(n_steps * d, n_steps * d, dtype=a.dtype, device=a.device)
    j[:d, :d] = p0i
    for t in range(1, n_steps):
        cur, prev = slice(t * d, (t + 1) * d), slice((t - 1) * d, t * d)
        j[cur, cur] += qi
        j[prev, prev] += a.T @ qi @ a
        j[cur, prev] -= qi @ a
        j[prev, cur] -= a.T @ qi
    h = torch.zeros(n_steps * d, dtype=a.dtype, device=a.device)
    h[:d] = p0i @ m0
    return h, -0.5 * j


def ssm_dense_posterior(
    a: Tensor, q_cov: Tensor, c: Tensor, r_var: Tensor, m0: Tensor, p0: Tensor, y: Tensor
) -> tuple[Tensor, Tensor]:
    """The smoothing marginals of a linear-Gaussian model as one dense BLR step (Eq 54).

    Args:
        a, q_cov: dynamics A (d, d) and process noise Q (d, d).
        c, r_var: observation matrix C (o, d) and the observation noise variances (o,).
        m0, p0: the prior of x_1, (d,) and (d, d).
        y: observations (T, o).

    Returns:
        Means (T, d) and covariances (T, d, d) of p(x_t | y_1..y_T).
    """
    n_steps, o = y.shape
    d = a.shape[0]
    _check_matrix(c, (o, d), "c")
    _check_matrix(r_var, (o,), "r_var")
    q = Gaussian(n_steps * d, dtype=a.dtype, device=a.device)
    prior = ssm_prior(a, q_cov, m0, p0, n_steps)
    design = torch.block_diag(*[c] * n_steps)
    lik = conjugate.GaussianLikelihood(r_var.repeat(n_steps), design=design)
    mean, cov = q.mean_cov(conjugate.posterior(q, prior, lik, y.reshape(-1)))
    blocks = cov.reshape(n_steps, d, n_steps, d).permute(0, 2, 1, 3)
    return mean.reshape(n_steps, d), blocks[torch.arange(n_steps), torch.arange(n_steps)]
