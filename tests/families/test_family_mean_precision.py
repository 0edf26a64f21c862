"""``natural_from_mean_precision``: the Gaussian families take a precision, not a covariance.

``natural_from_moments`` is the same method under its older name. Closed forms: 1e-12.
"""

from __future__ import annotations

import torch
from torch.testing import assert_close

from blrlib.families import DiagGaussian, Gaussian, GaussianMixture, LearnedGaussianMixture

F64 = torch.float64


def test_the_second_argument_is_the_precision() -> None:
    m = torch.tensor([1.0, -2.0], dtype=F64)
    prec = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=F64)
    q = Gaussian(2, dtype=F64)
    lam = q.natural_from_mean_precision(m, prec)
    mean, cov = q.mean_cov(lam)
    assert_close(mean, m, rtol=1e-12, atol=1e-12)
    assert_close(cov, torch.linalg.inv(prec), rtol=1e-12, atol=1e-12)
    for a, b in zip(lam, q.natural_from_moments(m, prec), strict=True):
        assert_close(a, b, rtol=0.0, atol=0.0)
    d = DiagGaussian(2, dtype=F64)
    _, var = d.mean_cov(d.natural_from_mean_precision(m, torch.diagonal(prec)))
    assert_close(var, 1.0 / torch.diagonal(prec), rtol=1e-12, atol=1e-12)


def test_mixtures_take_precisions_too() -> None:
    m = torch.tensor([[0.0], [1.0]], dtype=F64)
    prec = torch.tensor([[[4.0]], [[0.25]]], dtype=F64)
    fixed = GaussianMixture(torch.tensor([0.3, 0.7]), 1, dtype=F64)
    learned = LearnedGaussianMixture(2, 1, dtype=F64)
    lam_f = fixed.natural_from_mean_precision(m, prec)
    lam_l = learned.natural_from_mean_precision(m, prec, [0.3, 0.7])
    assert_close(fixed.mean_cov(lam_f)[1], 1.0 / prec, rtol=1e-12, atol=1e-12)
    assert_close(learned.mean_cov(lam_l)[1], 1.0 / prec, rtol=1e-12, atol=1e-12)
    assert_close(learned.weights_of(lam_l), torch.tensor([0.3, 0.7], dtype=F64))


def test_one_dimensional_gaussians_take_python_numbers() -> None:
    q, d = Gaussian(1, dtype=F64), DiagGaussian(1, dtype=F64)
    for a, b in zip(
        q.natural_from_mean_precision(0.5, 4.0),
        q.natural_from_mean_precision(torch.tensor([0.5]), torch.tensor([[4.0]])),
        strict=True,
    ):
        assert_close(a, b.to(F64), rtol=0.0, atol=0.0)
    assert_close(
        d.mean_cov(d.natural_from_mean_precision(0.5, 4.0))[1], torch.tensor([0.25]).double()
    )
