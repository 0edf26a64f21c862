"""Mixture-specific checks: Eq 27 joint form, Eq 71 responsibilities, Monte Carlo entropy/KL.

Monte Carlo estimates are compared with 5 standard errors, std(log-ratio) / sqrt(n), estimated
from the very draws the estimator used (same generator seed).
"""

from __future__ import annotations

import pytest
import torch
import torch.distributions as D
from family_cases import F64, MIXTURE, WEIGHTS, P, random_precision
from torch import Tensor
from torch.testing import assert_close

from blrlib.families import Gaussian, GaussianMixture, Params

N_MC = 4096


def _seeded() -> torch.Generator:
    return torch.Generator().manual_seed(7)


def _identical_components(m: Tensor, prec: Tensor) -> Params:
    return MIXTURE.family.natural_from_moments(m.expand(2, P), prec.expand(2, P, P))


def test_joint_log_prob_is_exponential_family_form() -> None:
    """log q(theta, z=k) = log pi_k + log h + <lam_k, T_k(theta)> - A_k(lam_k) (Eq 27)."""
    family, lam = MIXTURE.family, MIXTURE.make_lam()
    theta = family.rsample(lam, 5)
    stats = family.sufficient_statistics(theta)
    single = Gaussian(P, dtype=F64)
    log_z = torch.stack([single.log_partition((lam[0][k], lam[1][k])) for k in range(2)])
    dot = (lam[0] * stats[0]).sum(-1) + (lam[1] * stats[1]).sum((-2, -1))
    expected = WEIGHTS.log() + family.log_base_measure(theta)[:, None] + dot - log_z
    assert_close(family.joint_log_prob(lam, theta), expected)


def test_responsibilities_match_eq_71() -> None:
    family, lam = MIXTURE.family, MIXTURE.make_lam()
    theta = family.rsample(lam, 6).reshape(2, 3, P)
    ref = MIXTURE.reference(lam).component_distribution
    joint = WEIGHTS * ref.log_prob(theta.unsqueeze(-2)).exp()
    assert_close(family.responsibilities(lam, theta), joint / joint.sum(-1, keepdim=True))


def test_entropy_of_identical_components_is_gaussian_entropy() -> None:
    m, prec = torch.randn(P, dtype=F64), random_precision()
    lam = _identical_components(m, prec)
    exact = D.MultivariateNormal(m, precision_matrix=prec).entropy()
    estimate = MIXTURE.family.entropy(lam, n_samples=N_MC, generator=_seeded())
    log_q = MIXTURE.family.log_prob(lam, MIXTURE.family.rsample(lam, N_MC, generator=_seeded()))
    assert_close(estimate, -log_q.mean())  # the estimator is the plain average
    assert_close(estimate, exact, rtol=0.0, atol=5.0 * (log_q.std() / N_MC**0.5).item())


def test_entropy_of_separated_components() -> None:
    """Far-apart components: H(q) = sum_k pi_k H_k + H(pi), up to exp(-800)-small overlaps."""
    prec = random_precision(2)
    m = torch.tensor([[-40.0, 0.0, 0.0], [40.0, 0.0, 0.0]], dtype=F64)
    lam = MIXTURE.family.natural_from_moments(m, prec)
    h_k = D.MultivariateNormal(m, precision_matrix=prec).entropy()
    exact = (WEIGHTS * h_k).sum() - (WEIGHTS * WEIGHTS.log()).sum()
    estimate = MIXTURE.family.entropy(lam, n_samples=N_MC, generator=_seeded())
    log_q = MIXTURE.family.log_prob(lam, MIXTURE.family.rsample(lam, N_MC, generator=_seeded()))
    assert_close(estimate, exact, rtol=0.0, atol=5.0 * (log_q.std() / N_MC**0.5).item())


def test_kl_monte_carlo() -> None:
    family = MIXTURE.family
    # Identical components reduce both mixtures to single Gaussians.
    (mq, sq), (mp, sp) = [(torch.randn(P, dtype=F64), random_precision()) for _ in range(2)]
    ref_q = D.MultivariateNormal(mq, precision_matrix=sq)
    ref_p = D.MultivariateNormal(mp, precision_matrix=sp)
    lq, lp = _identical_components(mq, sq), _identical_components(mp, sp)
    estimate = family.kl(lq, lp, n_samples=N_MC, generator=_seeded())
    theta = family.rsample(lq, N_MC, generator=_seeded())
    ratio = family.log_prob(lq, theta) - family.log_prob(lp, theta)
    assert_close(estimate, ratio.mean())
    exact = D.kl_divergence(ref_q, ref_p)
    assert_close(estimate, exact, rtol=0.0, atol=5.0 * (ratio.std() / N_MC**0.5).item())


def test_kl_of_separated_mixtures() -> None:
    """Components 80 apart: KL(q || p) = sum_k pi_k KL(q_k || p_k), up to exp(-800) overlaps."""
    prec_q, prec_p = random_precision(2), random_precision(2)
    mq = torch.tensor([[-40.0, 0.0, 0.0], [40.0, 0.0, 0.0]], dtype=F64)
    mp = mq + 0.3 * torch.randn(2, P, dtype=F64)
    lq = MIXTURE.family.natural_from_moments(mq, prec_q)
    lp = MIXTURE.family.natural_from_moments(mp, prec_p)
    kl_k = D.kl_divergence(
        D.MultivariateNormal(mq, precision_matrix=prec_q),
        D.MultivariateNormal(mp, precision_matrix=prec_p),
    )
    estimate = MIXTURE.family.kl(lq, lp, n_samples=N_MC, generator=_seeded())
    theta = MIXTURE.family.rsample(lq, N_MC, generator=_seeded())
    ratio = MIXTURE.family.log_prob(lq, theta) - MIXTURE.family.log_prob(lp, theta)
    se = (ratio.std() / N_MC**0.5).item()
    assert_close(estimate, (WEIGHTS * kl_k).sum(), rtol=0.0, atol=5.0 * se)


def test_entropy_is_differentiable() -> None:
    lam = tuple(p.requires_grad_(True) for p in MIXTURE.make_lam())
    grads = torch.autograd.grad(MIXTURE.family.entropy(lam, n_samples=256), lam)
    for g in grads:
        assert_close(bool(torch.isfinite(g).all() and g.abs().sum() > 0), True)


def test_neg_entropy_natural_gradient_is_not_closed_form() -> None:
    with pytest.raises(NotImplementedError, match="log q"):
        MIXTURE.family.neg_entropy_natural_gradient(MIXTURE.make_lam())


def test_single_component_mixture_is_a_gaussian() -> None:
    """K = 1: every method agrees with the Gaussian family."""
    one, single = GaussianMixture([1.0], P, dtype=F64), Gaussian(P, dtype=F64)
    prec, m = random_precision(), torch.randn(P, dtype=F64)
    lam = single.natural_from_moments(m, prec)
    lam_k = one.natural_from_moments(m[None], prec[None])
    theta = torch.randn(4, P, dtype=F64)
    assert_close(one.log_prob(lam_k, theta), single.log_prob(lam, theta))
    assert_close(one.log_partition(lam_k), single.log_partition(lam))
    for a, b in zip(one.to_expectation(lam_k), single.to_expectation(lam), strict=True):
        assert_close(a[0], b)
    assert_close(one.weights.sum().item(), 1.0)
    assert_close(one.n_components, 1)
