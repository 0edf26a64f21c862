"""Generated data sets (nothing is downloaded).

from blrlib import data
X, y = data.logistic_regression(n=500, dim=5, seed=0)
X.shape, y.shape  # (500, 5), (500,)
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["linear_regression", "logistic_regression"]


def _generator(seed: int, device: torch.device | str | None) -> torch.Generator:
    gen = torch.Generator(device=device or "cpu")
    gen.manual_seed(seed)
    return gen


def logistic_regression(
    n: int,
    dim: int,
    *,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Inputs X ~ N(0, I) and labels y ~ Bernoulli(sigmoid(X w)) with w ~ N(0, I) fixed by seed.

    Returns:
        X of shape (n, dim) and y in {0, 1} of shape (n,), both of ``dtype`` (torch's
        default dtype unless given).
    """
    if n < 1 or dim < 1:
        raise ValueError(f"n and dim must be positive; got n={n}, dim={dim}")
    gen = _generator(seed, device)
    dtype = dtype or torch.get_default_dtype()
    w = torch.randn(dim, generator=gen, dtype=dtype, device=device)
    X = torch.randn(n, dim, generator=gen, dtype=dtype, device=device)
    y = torch.bernoulli(torch.sigmoid(X @ w), generator=gen)
    return X, y


def linear_regression(
    n: int,
    dim: int,
    *,
    noise: float = 0.5,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Inputs X ~ N(0, I) and targets y = X w + noise * eps with w, eps ~ N(0, I).

    Returns:
        X of shape (n, dim) and y of shape (n,), of ``dtype`` (torch's default unless given).
    """
    if n < 1 or dim < 1 or not noise > 0:  # "not >" also rejects NaN
        raise ValueError(f"n, dim and noise must be positive; got n={n}, dim={dim}, noise={noise}")
    gen = _generator(seed, device)
    dtype = dtype or torch.get_default_dtype()
    w = torch.randn(dim, generator=gen, dtype=dtype, device=device)
    X = torch.randn(n, dim, generator=gen, dtype=dtype, device=device)
    y = X @ w + noise * torch.randn(n, generator=gen, dtype=dtype, device=device)
    return X, y
