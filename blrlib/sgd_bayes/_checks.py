"""Argument checks shared by ``blrlib.sgd_bayes``; each error names the argument."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from blrlib._checks import positive_float
from blrlib.families import _gaussian_math as gm


def square(M: object, name: str) -> Tensor:
    """A finite, symmetric (P, P) tensor with P >= 1."""
    if not isinstance(M, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(M).__name__}")
    if M.dim() != 2 or M.shape[0] != M.shape[1] or M.shape[0] == 0:
        raise ValueError(f"{name}: expected a square (P, P) matrix; got {tuple(M.shape)}")
    if not torch.isfinite(M).all():
        raise ValueError(f"{name}: must be finite")
    gm.check_symmetric(M, name)
    return M


def spd(M: object, name: str) -> Tensor:
    """A symmetric positive definite (P, P) tensor."""
    M = square(M, name)
    if torch.linalg.cholesky_ex(M).info != 0:
        raise ValueError(f"{name}: must be symmetric positive definite")
    return M


def psd(M: object, name: str) -> Tensor:
    """A symmetric positive semi-definite (P, P) tensor (eigenvalues >= -1e-10 of the largest)."""
    M = square(M, name)
    evals = torch.linalg.eigvalsh(M)
    if evals.min() < -1e-10 * max(float(evals.abs().max()), 1.0):
        raise ValueError(f"{name}: must be symmetric positive semi-definite")
    return M


def same_size(P: int, M: Tensor, name: str) -> None:
    """Raise unless M is (P, P)."""
    if M.shape[0] != P:
        raise ValueError(f"{name}: expected ({P}, {P}); got {tuple(M.shape)}")


def learning_rate(eps: object, name: str = "eps") -> float:
    """A learning rate given as a float or a 0-d tensor, as a positive float."""
    if isinstance(eps, Tensor):
        if eps.dim() != 0:
            raise TypeError(
                f"{name} must be a float or a 0-d tensor; got shape {tuple(eps.shape)}"
                " (for one rate per chain, call once per rate)"
            )
        if eps.dtype == torch.bool or eps.is_complex():
            raise TypeError(f"{name} must be a real number; got a {eps.dtype} tensor")
        eps = eps.item()
    return positive_float(eps, name)


def as_numpy(M: Tensor) -> np.ndarray:
    """M as a float64 numpy array (for scipy's Lyapunov solvers)."""
    return M.detach().cpu().numpy().astype(np.float64)


def momentum(value: object) -> float:
    """The momentum coefficient mu, a float in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"momentum must be a float in [0, 1); got {type(value).__name__}")
    if not 0 <= value < 1:
        raise ValueError(f"momentum must be in [0, 1); got {value!r}")
    return float(value)
