"""Table-driven identities every family must satisfy (Sec 1.2, Eq 9, 19, 21, 27, App B).

Exact identities are checked at float64 defaults of ``assert_close`` (rtol 1e-7, atol 1e-7);
Monte Carlo checks use z-scores against 5 standard errors estimated from the same draws.
"""

from __future__ import annotations

import pytest
import torch
from family_cases import ALL, EXP_FAMILIES, F64, Case, draw, second_moment
from torch import Tensor
from torch.distributions import kl_divergence
from torch.testing import assert_close

from blrlib.families import Bernoulli, FixedCovGaussian, Params


def _requires_grad(params: Params) -> Params:
    return tuple(p.detach().clone().requires_grad_(True) for p in params)


def _points(case: Case, lam: Params, n: int = 7) -> Tensor:
    """Evaluation points: draws from q, plus a batch dimension to test broadcasting."""
    return draw(case, lam, 2 * n).reshape(2, n, -1)


@pytest.mark.parametrize("case", ALL, ids=repr)
def test_round_trip_natural_expectation(case: Case) -> None:
    lam = case.make_lam()
    case.family.check_natural(lam)
    mu = case.family.to_expectation(lam)
    case.family.check_expectation(mu)
    for back, orig in zip(case.family.to_natural(mu), lam, strict=True):
        assert_close(back, orig)


@pytest.mark.parametrize("case", ALL, ids=repr)
def test_log_partition_gradient_is_expectation(case: Case) -> None:
    lam = _requires_grad(case.make_lam())
    grads = torch.autograd.grad(case.family.log_partition(lam), lam)
    for g, mu in zip(grads, case.family.to_expectation(lam), strict=True):
        assert_close(g, mu)


@pytest.mark.parametrize("case", ALL, ids=repr)
def test_log_prob_matches_torch(case: Case) -> None:
    lam = case.make_lam()
    theta = _points(case, lam)
    assert_close(case.family.log_prob(lam, theta), case.reference(lam).log_prob(theta))


@pytest.mark.parametrize("case", EXP_FAMILIES, ids=repr)
def test_log_prob_is_exponential_family_form(case: Case) -> None:
    lam = case.make_lam()
    theta = _points(case, lam)
    stats = case.family.sufficient_statistics(theta)
    dot = sum((a * t).flatten(start_dim=2).sum(-1) for a, t in zip(lam, stats, strict=True))
    expected = case.family.log_base_measure(theta) + dot - case.family.log_partition(lam)
    assert_close(case.family.log_prob(lam, theta), expected)


@pytest.mark.parametrize("case", EXP_FAMILIES, ids=repr)
def test_entropy_and_kl_match_torch(case: Case) -> None:
    lam_q, lam_p = case.make_lam(), case.make_lam()
    ref_q, ref_p = case.reference(lam_q), case.reference(lam_p)
    assert_close(case.family.entropy(lam_q), ref_q.entropy())
    assert_close(case.family.kl(lam_q, lam_p), kl_divergence(ref_q, ref_p))


@pytest.mark.parametrize("case", EXP_FAMILIES, ids=repr)
def test_kl_is_the_expected_log_ratio(case: Case) -> None:
    """KL(q || p) = E_q[log q - log p], checked by Monte Carlo within 5 standard errors."""
    lam_q, lam_p = case.make_lam(), case.make_lam()
    theta = draw(case, lam_q, 20_000)
    ratio = case.family.log_prob(lam_q, theta) - case.family.log_prob(lam_p, theta)
    se = (ratio.std() / len(ratio) ** 0.5).item()
    assert_close(case.family.kl(lam_q, lam_p), ratio.mean(), rtol=0.0, atol=5 * se + 1e-12)


@pytest.mark.parametrize("case", ALL, ids=repr)
def test_sample_moments_within_five_standard_errors(case: Case) -> None:
    n = 20_000
    lam = case.make_lam()
    ref = case.reference(lam)
    theta = draw(case, lam, n, generator=torch.Generator().manual_seed(1))
    outer = theta.unsqueeze(-1) * theta.unsqueeze(-2)
    for sample, exact in ((theta, ref.mean), (outer, second_moment(ref))):
        z = (sample.mean(0) - exact) / (sample.std(0) / n**0.5).clamp_min(1e-12)
        assert_close(z, torch.zeros_like(z), rtol=0.0, atol=5.0)  # every |z| <= 5


@pytest.mark.parametrize("case", [c for c in ALL if c.name != "bernoulli"], ids=repr)
def test_rsample_is_differentiable(case: Case) -> None:
    lam = _requires_grad(case.make_lam())

    def draws(*params: Tensor) -> Tensor:
        return case.family.rsample(params, 4, generator=torch.Generator().manual_seed(3))

    # gradcheck compares autograd with finite differences and raises on any mismatch
    # (including a severed graph, where autograd would return zeros or fail).
    torch.autograd.gradcheck(draws, lam)
    grads = torch.autograd.grad(draws(*lam).square().sum(), lam)
    for g in grads:
        assert_close(bool(g.abs().sum() > 0), True)


def test_bernoulli_rsample_raises_and_sample_is_binary() -> None:
    family = Bernoulli(3, dtype=F64)
    lam = (torch.zeros(3, dtype=F64),)
    with pytest.raises(NotImplementedError, match="not reparameterisable"):
        family.rsample(lam, 5)
    theta = family.sample(lam, 50)
    assert_close(theta, theta.round())
    assert_close(theta.clamp(0.0, 1.0), theta)


@pytest.mark.parametrize("case", EXP_FAMILIES, ids=repr)
def test_neg_entropy_natural_gradient(case: Case) -> None:
    """App B: grad_mu E_q[log q] = grad_mu (-H(q(mu))) = lam + grad_mu E_q[log h]."""
    lam = case.make_lam()
    mu = _requires_grad(case.family.to_expectation(lam))
    autograd = torch.autograd.grad(-case.family.entropy(case.family.to_natural(mu)), mu)
    closed = case.family.neg_entropy_natural_gradient(lam)
    for a, c in zip(autograd, closed, strict=True):
        assert_close(a, c)
    if isinstance(case.family, FixedCovGaussian):  # constant entropy: both are exactly zero
        assert_close(closed[0], torch.zeros_like(lam[0]))


@pytest.mark.parametrize("case", ALL, ids=repr)
def test_family_attributes(case: Case) -> None:
    expected = {
        "gaussian": ("full", True),
        "diag": ("diag", True),
        "fixed_diag": ("first", True),
        "fixed_full": ("first", True),
        "bernoulli": ("first", True),
        "mixture": ("full", False),
    }[case.name]
    assert_close(case.family.order == expected[0], True)
    assert_close(case.family.closed_form_entropy_gradient, expected[1])
    assert_close(case.family.dim, 3)
