"""Cholesky-based Gaussian algebra shared by the full Gaussian and the Gaussian mixture.

    from blrlib.families import _gaussian_math as gm
    eta1, eta2 = torch.ones(2), -0.5 * torch.eye(2)
    m, prec, chol = gm.moments(eta1, eta2)   # Eq 9: m = S^-1 eta1, S = -2 eta2
    logz = gm.log_partition(eta1, eta2)      # 1/2 m^T S m - 1/2 log|S|
    theta = gm.reparameterise(m, chol, torch.randn(5, 2))

All functions broadcast over leading (component) dimensions: eta1 (..., P), eta2 (..., P, P).
No explicit inverse is formed except the covariance itself (``torch.cholesky_inverse``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_2PI = math.log(2.0 * math.pi)


def symmetrize(a: Tensor) -> Tensor:
    """(A + A^T) / 2 over the last two dimensions."""
    return 0.5 * (a + a.mT)


def precision(eta2: Tensor) -> Tensor:
    """S = -2 eta2 (Eq 9), symmetrised so that autograd returns symmetric gradients."""
    return -(eta2 + eta2.mT)


def log_det_from_cholesky(chol: Tensor) -> Tensor:
    """log|S| from its lower Cholesky factor, shape (...)."""
    return 2.0 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)


def moments(eta1: Tensor, eta2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean m = S^-1 eta1, precision S = -2 eta2 and its Cholesky factor L (S = L L^T)."""
    prec = precision(eta2)
    chol = torch.linalg.cholesky(prec)
    mean = torch.cholesky_solve(eta1.unsqueeze(-1), chol).squeeze(-1)
    return mean, prec, chol


def log_partition(eta1: Tensor, eta2: Tensor) -> Tensor:
    """A(lam) = 1/2 m^T S m - 1/2 log|S|, shape (...); the (2 pi)^(-P/2) lives in h."""
    mean, _, chol = moments(eta1, eta2)
    return 0.5 * (eta1 * mean).sum(-1) - 0.5 * log_det_from_cholesky(chol)


def expectation(eta1: Tensor, eta2: Tensor) -> tuple[Tensor, Tensor]:
    """mu = (m, S^-1 + m m^T) (Eq 9)."""
    mean, _, chol = moments(eta1, eta2)
    cov = symmetrize(torch.cholesky_inverse(chol))
    return mean, cov + mean.unsqueeze(-1) * mean.unsqueeze(-2)


def mean_cov_from_expectation(mu1: Tensor, mu2: Tensor) -> tuple[Tensor, Tensor]:
    """(m, cov) = (mu1, sym(mu2) - mu1 mu1^T), the inverse of Eq 9."""
    return mu1, symmetrize(mu2) - mu1.unsqueeze(-1) * mu1.unsqueeze(-2)


def natural_from_mean_cov(mean: Tensor, cov: Tensor) -> tuple[Tensor, Tensor]:
    """lam = (S m, -S/2) with S = cov^-1, via a Cholesky factor of cov."""
    chol = torch.linalg.cholesky(symmetrize(cov))
    prec = symmetrize(torch.cholesky_inverse(chol))
    eta1 = torch.cholesky_solve(mean.unsqueeze(-1), chol).squeeze(-1)
    return eta1, -0.5 * prec


def natural_from_mean_precision(mean: Tensor, prec: Tensor) -> tuple[Tensor, Tensor]:
    """lam = (S m, -S/2) (Eq 9)."""
    prec = symmetrize(prec)
    return (prec @ mean.unsqueeze(-1)).squeeze(-1), -0.5 * prec


def log_density(theta: Tensor, mean: Tensor, chol: Tensor) -> Tensor:
    """log N(theta | m, S^-1) with S = L L^T; broadcasts theta (..., P) against m (..., P)."""
    diff = theta - mean
    # z = L^T (theta - m), so that |z|^2 = (theta - m)^T S (theta - m).
    z = (chol.mT @ diff.unsqueeze(-1)).squeeze(-1)
    dim = theta.shape[-1]
    return 0.5 * log_det_from_cholesky(chol) - 0.5 * dim * LOG_2PI - 0.5 * (z * z).sum(-1)


def reparameterise(mean: Tensor, chol: Tensor, eps: Tensor) -> Tensor:
    """theta = m + L^-T eps, so that Cov(theta) = (L L^T)^-1 = S^-1 for eps ~ N(0, I)."""
    shift = torch.linalg.solve_triangular(chol.mT, eps.unsqueeze(-1), upper=True)
    return mean + shift.squeeze(-1)


def entropy(chol: Tensor) -> Tensor:
    """H(N(m, S^-1)) = P/2 (1 + log 2 pi) - 1/2 log|S|, shape (...)."""
    dim = chol.shape[-1]
    return 0.5 * dim * (1.0 + LOG_2PI) - 0.5 * log_det_from_cholesky(chol)


def check_precision(prec: Tensor, name: str) -> None:
    """Raise ValueError naming ``name`` unless every S in ``prec`` (..., P, P) is pos. definite."""
    _, info = torch.linalg.cholesky_ex(symmetrize(prec))
    if (info != 0).any():
        raise ValueError(f"{name}: the precision must be positive definite (Cholesky failed)")


def check_symmetric(mat: Tensor, name: str) -> None:
    """Raise ValueError naming ``name`` unless ``mat`` equals its transpose up to rounding."""
    scale = mat.abs().amax().clamp_min(1.0)
    tol = 1e3 * torch.finfo(mat.dtype).eps * scale
    if ((mat - mat.mT).abs() > tol).any():
        raise ValueError(f"{name} must be symmetric")


def natural_from_checked_moments(
    m: Tensor, precision: Tensor, mean_shape: tuple[int, ...]
) -> tuple[Tensor, Tensor]:
    """Check a mean of shape ``mean_shape`` and precisions of shape ``mean_shape + (P,)``, then
    return the natural parameters (S m, -S/2).

    Raises:
        ValueError: wrong shapes, non-finite values, or a precision that is not symmetric
            positive definite.
    """
    p = mean_shape[-1]
    if tuple(m.shape) != mean_shape:
        raise ValueError(f"m must have shape {mean_shape}, got {tuple(m.shape)}")
    if tuple(precision.shape) != (*mean_shape, p):
        raise ValueError(
            f"precision must have shape {(*mean_shape, p)}, got {tuple(precision.shape)}"
        )
    if not (torch.isfinite(m).all() and torch.isfinite(precision).all()):
        raise ValueError("m and precision must be finite")
    check_symmetric(precision, "precision")
    check_precision(precision, "precision")
    return natural_from_mean_precision(m, precision)
