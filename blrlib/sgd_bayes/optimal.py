"""The KL-optimal constant learning rate and preconditioner (Mandt et al. 2017, Theorems 1-2).

    eps = sgd_bayes.optimal_learning_rate(C, batch_size=10, n_data=1000)
    H = sgd_bayes.optimal_preconditioner(C, batch_size=10, eps=eps, n_data=1000)
    sgd_bayes.gaussian_kl(theta, Sigma, theta, torch.linalg.inv(1000 * A))  # what they minimise

Derived in :ref:`sgd-optimal-lr`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from blrlib._checks import count
from blrlib.sgd_bayes import _checks as check

__all__ = ["gaussian_kl", "optimal_learning_rate", "optimal_preconditioner"]


def gaussian_kl(mean_q: Tensor, cov_q: Tensor, mean_p: Tensor, cov_p: Tensor) -> Tensor:
    """KL(q || p) between Gaussians q = N(mean_q, cov_q) and p = N(mean_p, cov_p).

    KL = 1/2 [tr(cov_p^-1 cov_q) + d^T cov_p^-1 d - P + log det cov_p - log det cov_q],
    d = mean_p - mean_q; Mandt et al. (2017) minimise it with q the SGD
    stationary distribution and p the approximate posterior.

    Args:
        mean_q, mean_p: means, shape (P,).
        cov_q, cov_p: covariances, (P, P), symmetric positive definite.

    Returns:
        A scalar Tensor.

    Raises:
        TypeError: an argument is not a Tensor.
        ValueError: shapes disagree or a covariance is not SPD.
    """
    cov_q, cov_p = check.spd(cov_q, "cov_q"), check.spd(cov_p, "cov_p")
    P = cov_p.shape[0]
    check.same_size(P, cov_q, "cov_q")
    for m, name in ((mean_q, "mean_q"), (mean_p, "mean_p")):
        if not isinstance(m, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(m).__name__}")
        if m.shape != (P,):
            raise ValueError(f"{name}: expected shape ({P},); got {tuple(m.shape)}")
    Lp, Lq = torch.linalg.cholesky(cov_p), torch.linalg.cholesky(cov_q)
    trace = torch.linalg.solve_triangular(Lp, Lq, upper=False).square().sum()
    z = torch.linalg.solve_triangular(Lp, (mean_p - mean_q)[:, None], upper=False)
    logdet = 2 * (Lp.diagonal().log().sum() - Lq.diagonal().log().sum())
    return 0.5 * (trace + z.square().sum() - P + logdet)


def optimal_learning_rate(C: Tensor, *, batch_size: int, n_data: int) -> float:
    """KL-optimal constant learning rate eps* = 2 S P / (N tr C) (Mandt et al., Theorem 1).

    Assumes the mean loss is quadratic near theta* with Hessian A, the noise covariance C
    is constant there, and the posterior is N(theta*, (N A)^-1). eps* minimises
    KL(N(theta*, Sigma(eps)) || N(theta*, (N A)^-1)) with Sigma(eps) the continuous-time
    Lyapunov solution, for ANY SPD A and C: the trace of the Lyapunov equation gives
    tr(A Sigma) = eps tr C / (2 S) and log det Sigma = P log eps + const, so A drops out.
    It is not the minimiser for the discrete-time covariance (off by O(eps lambda_max(A))).

    Args:
        C: single-example gradient noise covariance, (P, P), PSD with tr C > 0.
        batch_size: minibatch size S, >= 1.
        n_data: number of examples N, >= 1.

    Returns:
        eps* as a float.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: C is not PSD or has zero trace, or a count is below 1.
    """
    C = check.psd(C, "C")
    S, N = count(batch_size, "batch_size"), count(n_data, "n_data")
    trace = float(C.trace())
    if trace <= 0:
        raise ValueError("C: must have a positive trace")
    return 2 * S * C.shape[0] / (N * trace)


def optimal_preconditioner(
    C: Tensor, *, batch_size: int, eps: float, n_data: int, diagonal: bool = False
) -> Tensor:
    """KL-optimal preconditioner H* = (2 S / (eps N)) C^-1 (Mandt et al., Theorem 2).

    Assumptions as in :func:`optimal_learning_rate`. With the full H*, the continuous-time
    stationary covariance is exactly the posterior (N A)^-1 for any SPD A and C:
    (H A)(N A)^-1 + (N A)^-1 (A H) = 2 H / N = (eps / S) H C H. With ``diagonal=True``
    C is replaced by diag(C) (per-coordinate rates 2 S / (eps N C_kk), as in TensorFlow
    Probability's VariationalSGD); this matches the posterior only when C is diagonal.

    Args:
        C: single-example gradient noise covariance, (P, P), SPD (its diagonal positive
            when ``diagonal``).
        batch_size: minibatch size S, >= 1.
        eps: learning rate, > 0: a float or a 0-d tensor.
        n_data: number of examples N, >= 1.
        diagonal: use diag(C) instead of C.

    Returns:
        H*, shape (P, P).

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: C is not SPD (or has a non-positive diagonal), or a scalar is invalid.
    """
    S, N = count(batch_size, "batch_size"), count(n_data, "n_data")
    eps = check.learning_rate(eps)
    scale = 2 * S / (eps * N)
    if diagonal:
        C = check.psd(C, "C")
        d = C.diagonal()
        if (d <= 0).any():
            raise ValueError("C: diagonal must be positive when diagonal=True")
        return torch.diag(scale / d)
    C = check.spd(C, "C")
    H = scale * torch.cholesky_inverse(torch.linalg.cholesky(C))
    return (H + H.T) / 2
