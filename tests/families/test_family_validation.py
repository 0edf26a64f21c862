"""Bad inputs raise TypeError or ValueError naming the offending argument."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from family_cases import ALL, F64, FIXED_FULL, GAUSSIAN, MIXTURE, Case, P
from torch import Tensor

from blrlib.families import (
    Bernoulli,
    DiagGaussian,
    FixedCovGaussian,
    Gaussian,
    GaussianMixture,
    Params,
)

NAN = float("nan")


def _eye(*batch: int) -> Tensor:
    return torch.eye(P, dtype=F64).expand(*batch, P, P).clone()


def _vec(*shape: int, value: float = 0.0) -> Tensor:
    return torch.full(shape, value, dtype=F64)


def _asymmetric() -> Tensor:
    eta2 = -0.5 * _eye()
    eta2[0, 1] = 0.3
    return eta2


# (family, bad lam, exception, message regex)
BAD_NATURAL: list[tuple[str, object, object, type[Exception], str]] = [
    ("gaussian-short", Gaussian(P, dtype=F64), (_vec(P),), TypeError, "lam must be a tuple of 2"),
    ("gaussian-list", Gaussian(P, dtype=F64), [_vec(P), -_eye()], TypeError, "lam"),
    ("gaussian-not-tensor", Gaussian(P, dtype=F64), (_vec(P), 1.0), TypeError, r"lam\[1\]"),
    (
        "gaussian-dtype",
        Gaussian(P, dtype=F64),
        (_vec(P).float(), -_eye().float()),
        TypeError,
        r"lam\[0\] must have dtype",
    ),
    ("gaussian-shape", Gaussian(P, dtype=F64), (_vec(P + 1), -_eye()), ValueError, r"lam\[0\]"),
    ("gaussian-nan", Gaussian(P, dtype=F64), (_vec(P, value=NAN), -_eye()), ValueError, "lam"),
    ("gaussian-not-pd", Gaussian(P, dtype=F64), (_vec(P), _eye()), ValueError, "positive def"),
    ("gaussian-asym", Gaussian(P, dtype=F64), (_vec(P), _asymmetric()), ValueError, "symmetric"),
    ("diag-shape", DiagGaussian(P, dtype=F64), (_vec(P), -_eye()), ValueError, r"lam\[1\]"),
    ("diag-not-pos", DiagGaussian(P, dtype=F64), (_vec(P), _vec(P)), ValueError, "positive"),
    (
        "diag-inf",
        DiagGaussian(P, dtype=F64),
        (_vec(P), _vec(P, value=-math.inf)),
        ValueError,
        "lam",
    ),
    ("fixed-nan", FixedCovGaussian(FIXED_FULL), (_vec(P, value=NAN),), ValueError, r"lam\[0\]"),
    ("bernoulli-long", Bernoulli(P, dtype=F64), (_vec(P), _vec(P)), TypeError, "lam"),
    ("mixture-k", MIXTURE.family, (_vec(3, P), -_eye(3)), ValueError, r"lam\[0\]"),
    ("mixture-not-pd", MIXTURE.family, (_vec(2, P), _eye(2)), ValueError, "positive def"),
]


@pytest.mark.parametrize(
    ("family", "lam", "error", "match"),
    [row[1:] for row in BAD_NATURAL],
    ids=[row[0] for row in BAD_NATURAL],
)
def test_check_natural_rejects(family, lam, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        family.check_natural(lam)


@pytest.mark.parametrize("case", ALL, ids=repr)
def test_check_natural_names_the_argument(case: Case) -> None:
    lam = case.make_lam()
    bad = (lam[0].new_full(lam[0].shape, NAN), *lam[1:])
    with pytest.raises(ValueError, match="prior"):
        case.family.check_natural(bad, "prior")


BAD_EXPECTATION: list[tuple[str, object, Params, str]] = [
    ("gaussian-not-pd", Gaussian(P, dtype=F64), (_vec(P, value=2.0), _eye()), r"mu"),
    (
        "diag-negative-var",
        DiagGaussian(P, dtype=F64),
        (_vec(P, value=2.0), _vec(P, value=1.0)),
        "mu",
    ),
    ("bernoulli-range", Bernoulli(P, dtype=F64), (_vec(P, value=1.0),), r"mu\[0\]"),
    ("mixture-not-pd", MIXTURE.family, (_vec(2, P), -_eye(2)), "mu"),
]


@pytest.mark.parametrize(
    ("family", "mu", "match"),
    [row[1:] for row in BAD_EXPECTATION],
    ids=[r[0] for r in BAD_EXPECTATION],
)
def test_check_expectation_rejects(family, mu: Params, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        family.check_expectation(mu)


BAD_CONSTRUCTORS: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    ("dim-zero", lambda: Gaussian(0), ValueError, "dim"),
    ("dim-float", lambda: DiagGaussian(2.0), TypeError, "dim"),
    ("dtype-int", lambda: Bernoulli(2, dtype=torch.int64), TypeError, "dtype"),
    ("fixed-not-tensor", lambda: FixedCovGaussian([1.0, 2.0]), TypeError, "precision"),
    ("fixed-shape", lambda: FixedCovGaussian(torch.ones(2, 3)), ValueError, "precision"),
    (
        "fixed-negative",
        lambda: FixedCovGaussian(torch.tensor([1.0, -1.0])),
        ValueError,
        "precision",
    ),
    ("fixed-zero", lambda: FixedCovGaussian(torch.tensor([1.0, 0.0])), ValueError, "precision"),
    ("fixed-nan", lambda: FixedCovGaussian(torch.tensor([1.0, NAN])), ValueError, "precision"),
    ("fixed-not-pd", lambda: FixedCovGaussian(-torch.eye(2)), ValueError, "precision"),
    (
        "fixed-asym",
        lambda: FixedCovGaussian(torch.tensor([[2.0, 1.0], [0.0, 2.0]])),
        ValueError,
        "symmetric",
    ),
    ("weights-negative", lambda: GaussianMixture([1.5, -0.5], 2), ValueError, "weights"),
    ("weights-zero", lambda: GaussianMixture([1.0, 0.0], 2), ValueError, "weights"),
    ("weights-sum", lambda: GaussianMixture([0.5, 0.6], 2), ValueError, "weights must sum"),
    ("weights-nan", lambda: GaussianMixture([NAN, 0.5], 2), ValueError, "weights"),
    ("weights-shape", lambda: GaussianMixture([[0.5, 0.5]], 2), ValueError, "weights"),
]


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [row[1:] for row in BAD_CONSTRUCTORS],
    ids=[row[0] for row in BAD_CONSTRUCTORS],
)
def test_constructors_reject(
    build: Callable[[], object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        build()


BAD_CALLS: list[tuple[str, Callable[[], object], str]] = [
    (
        "gaussian-moments-not-pd",
        lambda: Gaussian(P, dtype=F64).natural_from_moments(_vec(P), -_eye()),
        "precision",
    ),
    (
        "gaussian-moments-shape",
        lambda: Gaussian(P, dtype=F64).natural_from_moments(_vec(P + 1), _eye()),
        "m must",
    ),
    (
        "diag-moments-zero",
        lambda: DiagGaussian(P, dtype=F64).natural_from_moments(_vec(P), _vec(P)),
        "precision",
    ),
    (
        "fixed-moments-other-precision",
        lambda: FixedCovGaussian(FIXED_FULL).natural_from_moments(_vec(P), 2.0 * FIXED_FULL),
        "precision",
    ),
    (
        "mixture-moments-not-pd",
        lambda: MIXTURE.family.natural_from_moments(_vec(2, P), -_eye(2)),
        "precision",
    ),
    ("rsample-n", lambda: GAUSSIAN.family.rsample(GAUSSIAN.make_lam(), 0), "n must"),
    ("log-prob-theta", lambda: GAUSSIAN.family.log_prob(GAUSSIAN.make_lam(), _vec(P + 1)), "theta"),
    (
        "surrogate-hess",
        lambda: GAUSSIAN.family.expected_loss_surrogate(
            GAUSSIAN.family.to_expectation(GAUSSIAN.make_lam()), _vec(P), _vec(P)
        ),
        "hess",
    ),
    (
        "diag-surrogate-grad",
        lambda: DiagGaussian(P, dtype=F64).expected_loss_surrogate(
            (_vec(P), _vec(P, value=1.0)), _vec(P + 1), _vec(P)
        ),
        "grad",
    ),
    (
        "mixture-surrogate-grad",
        lambda: MIXTURE.family.expected_loss_surrogate(
            MIXTURE.family.to_expectation(MIXTURE.make_lam()), _vec(P), _eye(2)
        ),
        "grad",
    ),
]


@pytest.mark.parametrize(
    ("call", "match"), [row[1:] for row in BAD_CALLS], ids=[row[0] for row in BAD_CALLS]
)
def test_methods_reject(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
