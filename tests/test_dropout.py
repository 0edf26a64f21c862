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


def logistic(theta):
    """The two-unit logistic regression of the chapter's cost table (not quadratic)."""
    x = torch.tensor([[1.0, 0.5], [-0.3, 1.2], [0.8, -1.0], [-1.1, -0.4]], dtype=F64)
    y = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=F64)
    return torch.nn.functional.softplus(-y * (x @ theta)).sum() + 0.5 * theta @ theta


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


def test_near_zero_the_entropy_approximation_converges_more_slowly():
    """A mean near 0 (0.1 slab sd) sits on the spike: Eq 85-86's part of the step error is
    larger there than 4 slab sds away at every s0, but it still falls as s0 grows (about
    s0^-0.4 here) and is below 1e-3 at s0 = 1e10; the delta method's part does not move."""
    near = [
        dropout.approximation_cost(*_q(0.8, s0, m=(0.05, -0.05)), logistic, rho=0.5)
        for s0 in (1e6, 1e8, 1e10)
    ]
    far = [
        dropout.approximation_cost(*_q(0.8, s0, m=(2.0, -2.0)), logistic, rho=0.5)
        for s0 in (1e6, 1e8, 1e10)
    ]
    ent = [c["mean_error_entropy"] for c in near]
    assert ent[0] > ent[1] > ent[2] and ent[2] < 1e-3
    assert all(
        a["mean_error_entropy"] > b["mean_error_entropy"] for a, b in zip(near, far, strict=True)
    )
    loss_part = [c["mean_error_loss"] for c in near]
    assert max(loss_part) - min(loss_part) < 0.05 * min(loss_part)


def test_entropy_gap_against_quadrature():
    """E_q[H(r)] by Monte Carlo (2e5 draws) against a trapezoid sum on a fine grid (P = 1)."""
    q, lam = _q(0.8, 25.0, m=(0.3, -1.0))
    est, se = dropout.entropy_gap(
        q, lam, n_samples=200_000, generator=torch.Generator().manual_seed(0)
    )
    t = torch.linspace(-6.0, 6.0, 200_001, dtype=F64)
    for j in range(2):
        one = families.SpikeSlab(0.8, 25.0, n_units=1, unit_dim=1, dtype=F64)
        lam_j = (lam[0][j : j + 1], lam[1][j : j + 1])
        dens = one.log_prob(lam_j, t[:, None]).exp()
        r = one.responsibilities(lam_j, t[:, None])[:, 0]
        h = -(torch.special.xlogy(r, r) + torch.special.xlogy(1 - r, 1 - r))
        exact = torch.trapezoid(dens * h, t)
        assert abs(float(est[j] - exact)) < 5 * float(se[j])


def test_entropy_gap_is_zero_without_a_spike_and_small_for_a_narrow_one():
    q, lam = _q(1.0, 10.0)
    assert_close(dropout.entropy_gap(q, lam, n_samples=1000)[0], torch.zeros(2, dtype=F64))
    wide = dropout.entropy_gap(
        *_q(0.8, 4.0, m=(0.5, 0.5)), generator=torch.Generator().manual_seed(1)
    )
    narrow = dropout.entropy_gap(
        *_q(0.8, 1e6, m=(0.5, 0.5)), generator=torch.Generator().manual_seed(1)
    )
    assert (narrow[0] < wide[0] / 10).all()


def test_bad_family_and_sample_count():
    q = families.SpikeSlab(0.5, 1.0, n_units=2, unit_dim=2, dtype=F64)
    lam = q.natural_from_moments(torch.zeros(2, 2, dtype=F64), torch.eye(2).repeat(2, 1, 1))
    with pytest.raises(ValueError, match="family"):
        dropout.entropy_terms(q, lam)
    with pytest.raises(TypeError, match="family"):
        dropout.loss_terms(families.Gaussian(2, dtype=F64), lam, quadratic)
    with pytest.raises(TypeError, match="family"):
        dropout.entropy_gap(families.Gaussian(2, dtype=F64), lam)
    with pytest.raises(ValueError, match="n_samples"):
        dropout.entropy_gap(q, lam, n_samples=1)
