"""blrlib.dropout: the exact spike-and-slab step and the cost of Eq 84-86 on a tiny model."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from blrlib import dropout, families

F64 = torch.float64
A = torch.tensor([[3.0, 0.8], [0.8, 2.0]], dtype=F64)


def quadratic(theta):
    """A coupled quadratic: its gradient is linear, so the delta method is exact (Eq 84)."""
    d = theta - torch.tensor([1.0, -0.5], dtype=F64)
    return 0.5 * d @ A @ d


def _q(pi1, s0, m=(1.0, -0.5), prec=4.0):
    q = families.SpikeSlab(pi1, s0, n_units=2, unit_dim=1, dtype=F64)
    lam = q.natural_from_moments(torch.tensor(m, dtype=F64).view(2, 1), prec * torch.ones(2, 1, 1))
    return q, lam


def test_entropy_terms_without_spike_are_eq85_eq86():
    """With pi1 = 1, r = 1 and Eq 85-86 are exact: (0, -S); checks the quadrature (1e-8)."""
    q, lam = _q(1.0, 10.0)
    g, h = dropout.entropy_terms(q, lam)
    assert_close(g, torch.zeros(2, dtype=F64), rtol=0, atol=1e-8)
    assert_close(h, torch.full((2,), -4.0, dtype=F64), rtol=0, atol=1e-8)


def test_delta_method_is_exact_for_a_quadratic():
    q, lam = _q(0.7, 100.0)
    exact = dropout.loss_terms(q, lam, quadratic)
    approx = dropout.expected_dropout_terms(q, lam, quadratic)
    for a, b in zip(exact, approx, strict=True):
        assert_close(a, b, rtol=0, atol=1e-10)


def test_responsibility_approximation_improves_with_a_narrower_spike():
    """Means far from 0 (|m| = 4 slab sds): the step error falls as s0 grows."""
    errors = [
        dropout.approximation_cost(*_q(0.8, s0, m=(2.0, -2.0)), quadratic, rho=0.5)["mean_error"]
        for s0 in (1e2, 1e4, 1e6)
    ]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-3


def test_responsibility_approximation_breaks_near_zero():
    """A mean near 0 (0.1 slab sd) sits on the spike: the error stays above 1 % at s0 = 1e6."""
    near = dropout.approximation_cost(*_q(0.8, 1e6, m=(0.05, -0.05)), quadratic, rho=0.5)
    far = dropout.approximation_cost(*_q(0.8, 1e6, m=(2.0, -2.0)), quadratic, rho=0.5)
    assert near["mean_error"] > 0.01 > 10 * far["mean_error"]


def test_bad_family():
    q = families.SpikeSlab(0.5, 1.0, n_units=2, unit_dim=2, dtype=F64)
    lam = q.natural_from_moments(torch.zeros(2, 2, dtype=F64), torch.eye(2).repeat(2, 1, 1))
    with pytest.raises(ValueError, match="family"):
        dropout.entropy_terms(q, lam)
    with pytest.raises(TypeError, match="family"):
        dropout.loss_terms(families.Gaussian(2, dtype=F64), lam, quadratic)


def test_experiment_rows_cover_the_grid():
    from blrlib import experiments

    rows = experiments.run("dropout_approximations", scale="ci", device="cpu")["result"]["rows"]
    assert len(rows) == 3 * 6 and all(r["valid"] for r in rows)
