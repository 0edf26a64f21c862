"""The spike-and-slab family of Eq 41 (App G's parameters) against torch.distributions.

Monte Carlo moments are compared within 5 standard errors; everything else is an identity in
float64, compared at the default tolerances of ``assert_close`` (rounding only).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributions as D
from torch.testing import assert_close

from blrlib import blr, families
from blrlib.families import SpikeSlab

F64 = torch.float64
J, P, PI1, S0 = 3, 2, 0.7, 4.0


def _family(fixed: bool = False) -> SpikeSlab:
    return SpikeSlab(PI1, S0, n_units=J, unit_dim=P, precision=2.5 if fixed else None, dtype=F64)


def _lam(q: SpikeSlab):
    m = torch.randn(J, P, dtype=F64)
    if q.fixed:
        return q.natural_from_moments(m)
    a = torch.randn(J, P, P, dtype=F64)
    return q.natural_from_moments(m, a @ a.mT / P + 0.5 * torch.eye(P, dtype=F64))


def _reference(q: SpikeSlab, lam) -> D.Distribution:
    """Per unit, pi1 N(m_j, S_j^-1) + (1 - pi1) N(0, I / s0) as a torch mixture; batch (J,)."""
    m, cov = q.mean_cov(lam)
    means = torch.stack([m, torch.zeros_like(m)], 1)  # (J, 2, P)
    covs = torch.stack([cov, torch.eye(P, dtype=F64).expand(J, P, P) / S0], 1)
    mix = D.Categorical(torch.tensor([PI1, 1 - PI1], dtype=F64).expand(J, 2))
    return D.MixtureSameFamily(mix, D.MultivariateNormal(means, covs))


@pytest.mark.parametrize("fixed", [False, True])
def test_round_trip_and_log_partition_gradient(fixed):
    """lam -> mu -> lam is exact and grad A(lam) = mu = (pi1 m, pi1 (S^-1 + m m^T)) (App G)."""
    q = _family(fixed)
    lam = _lam(q)
    mu = q.to_expectation(lam)
    for a, b in zip(q.to_natural(mu), lam, strict=True):
        assert_close(a, b)
    leaves = tuple(p.clone().requires_grad_(True) for p in lam)
    grads = torch.autograd.grad(q.log_partition(leaves), leaves)
    for a, b in zip(grads, mu, strict=True):
        assert_close(a, b)
    m, cov = q.mean_cov(lam)
    assert_close(mu[0], PI1 * m)
    if not fixed:
        assert_close(mu[1], PI1 * (cov + m.unsqueeze(-1) * m.unsqueeze(-2)))


@pytest.mark.parametrize("fixed", [False, True])
def test_log_prob_and_responsibilities_match_torch_mixture(fixed):
    q = _family(fixed)
    lam = _lam(q)
    theta = q.sample(lam, 7)
    ref = _reference(q, lam)
    per_unit = ref.log_prob(theta.view(7, J, P))
    assert_close(q.log_prob(lam, theta), per_unit.sum(-1))
    slab = ref.component_distribution.log_prob(theta.view(7, J, 1, P))[..., 0]
    assert_close(q.responsibilities(lam, theta), (math.log(PI1) + slab - per_unit).exp())


def test_sample_moments_within_five_standard_errors():
    """E[theta_j] = pi1 m_j and E[theta_j theta_j^T] = mu2_j + (1 - pi1) I / s0 (App G)."""
    q = _family()
    lam = _lam(q)
    n = 20_000
    theta = q.sample(lam, n, generator=torch.Generator().manual_seed(3)).view(n, J, P)
    mu1, mu2 = q.to_expectation(lam)
    second = theta.unsqueeze(-1) * theta.unsqueeze(-2)
    for draws, target in (
        (theta, mu1),
        (second, mu2 + (1 - PI1) * torch.eye(P, dtype=F64) / S0),
    ):
        se = draws.std(0) / math.sqrt(n)
        assert ((draws.mean(0) - target).abs() <= 5 * se + 1e-12).all()


def test_entropy_is_monte_carlo_of_log_prob():
    q = _family()
    lam = _lam(q)
    gen = torch.Generator().manual_seed(5)
    est = q.entropy(lam, n_samples=4096, generator=gen)
    draws = q.sample(lam, 20_000, generator=torch.Generator().manual_seed(6))
    values = -q.log_prob(lam, draws)
    assert (est - values.mean()).abs() <= 5 * values.std() * math.sqrt(1 / 4096 + 1 / 20_000)


def test_pi1_one_is_the_slab_gaussian():
    q = SpikeSlab(1.0, S0, n_units=J, unit_dim=P, dtype=F64)
    lam = _lam(q)
    theta = q.sample(lam, 4)
    m, cov = q.mean_cov(lam)
    ref = D.MultivariateNormal(m, cov).log_prob(theta.view(4, J, P)).sum(-1)
    assert_close(q.log_prob(lam, theta), ref)
    assert_close(q.responsibilities(lam, theta), torch.ones(4, J, dtype=F64))


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        (dict(pi1=0.0), ValueError, "pi1"),
        (dict(pi1=1.5), ValueError, "pi1"),
        (dict(pi1=True), TypeError, "pi1"),
        (dict(pi1="0.5"), TypeError, "pi1"),
        (dict(s0=0.0), ValueError, "s0"),
        (dict(s0=-1.0), ValueError, "s0"),
        (dict(precision=0.0), ValueError, "precision"),
        (dict(n_units=0), ValueError, "n_units"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, name):
    args = dict(pi1=PI1, s0=S0, n_units=J, unit_dim=P) | kwargs
    pi1, s0 = args.pop("pi1"), args.pop("s0")
    with pytest.raises(error, match=name):
        SpikeSlab(pi1, s0, **args)


@pytest.mark.parametrize(
    ("masks", "error"),
    [
        (torch.ones(J + 1, dtype=F64), ValueError),
        (torch.ones(1, J, dtype=F64), ValueError),
        (torch.ones(J, dtype=torch.long), TypeError),
        (torch.ones(J, dtype=torch.bool), TypeError),
        (torch.full((J,), 2.0, dtype=F64), ValueError),
        ([1.0, 0.0, 1.0], TypeError),
    ],
)
def test_bad_masks(masks, error):
    """The dropout estimator validates its masks z (J,): shape, dtype and 0/1 values."""
    q = _family()
    with pytest.raises(error, match="masks"):
        blr.step(q, _lam(q), lambda t: (t * t).sum(), rho=0.5, estimator="dropout", masks=masks)


def test_masks_only_with_the_dropout_estimator():
    q = families.Gaussian(2, dtype=F64)
    lam = q.natural_from_moments(torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64))
    with pytest.raises(ValueError, match="masks"):
        blr.step(q, lam, lambda t: (t * t).sum(), rho=0.5, masks=torch.ones(2, dtype=F64))
    with pytest.raises(TypeError, match="family"):
        blr.step(q, lam, lambda t: (t * t).sum(), rho=0.5, estimator="dropout")
