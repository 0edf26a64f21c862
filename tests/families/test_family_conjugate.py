"""The conjugate families of Sec 5 (Beta, Gamma, Dirichlet, Normal-Gamma) and the categorical
E-step family, checked like the others: gradient of A = mu, exact round trips, log_prob,
entropy and KL against torch.distributions, E[T(theta)] = mu by sampling, App B.

Exact identities use the float64 defaults of ``assert_close`` (rtol 1e-7, atol 1e-7); the
inverse maps mu -> lam are Newton solves iterated to ~1e-15, far inside that. Monte Carlo
checks use z-scores against 5 standard errors estimated from the same draws.
"""

from __future__ import annotations

import pytest
import torch
from family_cases import CONJUGATE, F64, Case
from torch.distributions import kl_divergence
from torch.testing import assert_close

from blrlib.families import Beta, Categorical, Dirichlet, Gamma, NormalGamma, NormalWishart

DISCRETE = (Categorical,)


def _draw(case: Case, lam, n: int, generator=None) -> torch.Tensor:
    if isinstance(case.family, DISCRETE):
        return case.family.sample(lam, n, generator=generator)
    return case.family.rsample(lam, n, generator=generator)


@pytest.mark.parametrize("case", CONJUGATE, ids=repr)
def test_round_trip(case: Case) -> None:
    lam = case.make_lam()
    case.family.check_natural(lam)
    mu = case.family.to_expectation(lam)
    case.family.check_expectation(mu)
    for back, orig in zip(case.family.to_natural(mu), lam, strict=True):
        assert_close(back, orig, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", CONJUGATE, ids=repr)
def test_log_partition_gradient_is_expectation(case: Case) -> None:
    lam = tuple(p.clone().requires_grad_(True) for p in case.make_lam())
    grads = torch.autograd.grad(case.family.log_partition(lam), lam)
    for g, mu in zip(grads, case.family.to_expectation(lam), strict=True):
        assert_close(g, mu)


@pytest.mark.parametrize("case", CONJUGATE, ids=repr)
def test_log_prob_entropy_kl_match_reference(case: Case) -> None:
    lam_q, lam_p = case.make_lam(), case.make_lam()
    ref_q, ref_p = case.reference(lam_q), case.reference(lam_p)
    theta = _draw(case, lam_q, 10)
    assert_close(case.family.log_prob(lam_q, theta), ref_q.log_prob(theta))
    stats = case.family.sufficient_statistics(theta)
    dot = sum((a * t).flatten(start_dim=1).sum(-1) for a, t in zip(lam_q, stats, strict=True))
    expected = case.family.log_base_measure(theta) + dot - case.family.log_partition(lam_q)
    assert_close(case.family.log_prob(lam_q, theta), expected)
    assert_close(case.family.entropy(lam_q), ref_q.entropy())
    kl_ref = ref_q.kl(ref_p) if hasattr(ref_q, "kl") else kl_divergence(ref_q, ref_p)
    assert_close(case.family.kl(lam_q, lam_p), kl_ref)


@pytest.mark.parametrize("case", CONJUGATE, ids=repr)
def test_sufficient_statistics_average_to_mu(case: Case) -> None:
    """E_q[T(theta)] = mu within 5 standard errors (20 000 draws)."""
    n = 20_000
    lam = case.make_lam()
    theta = _draw(case, lam, n, generator=torch.Generator().manual_seed(1))
    for stat, mu in zip(
        case.family.sufficient_statistics(theta), case.family.to_expectation(lam), strict=True
    ):
        z = (stat.mean(0) - mu) / (stat.std(0) / n**0.5)
        assert_close(z, torch.zeros_like(z), rtol=0.0, atol=5.0)  # every |z| <= 5


@pytest.mark.parametrize("case", CONJUGATE, ids=repr)
def test_neg_entropy_natural_gradient(case: Case) -> None:
    """App B: grad_mu(-H(q(mu))) = lam (h = 1), through the Newton solve's implicit gradient."""
    lam = case.make_lam()
    mu = tuple(m.detach().requires_grad_(True) for m in case.family.to_expectation(lam))
    grads = torch.autograd.grad(-case.family.entropy(case.family.to_natural(mu)), mu)
    for g, expected in zip(grads, case.family.neg_entropy_natural_gradient(lam), strict=True):
        assert_close(g, expected)
        assert_close(g, expected, rtol=1e-7, atol=1e-7)


def test_draws_are_reproducible_from_a_generator() -> None:
    q = Gamma(2, dtype=F64)
    lam = q.natural_from_shape_rate(torch.tensor([1.5, 3.0]), torch.tensor([2.0, 0.5]))
    one = q.rsample(lam, 5, generator=torch.Generator().manual_seed(4))
    two = q.rsample(lam, 5, generator=torch.Generator().manual_seed(4))
    assert_close(one, two, rtol=0.0, atol=0.0)


@pytest.mark.parametrize(
    ("family", "lam", "match"),
    [
        (Beta(2, dtype=F64), (torch.tensor([0.0, -1.5]), torch.zeros(2)), "Beta shapes"),
        (Gamma(1, dtype=F64), (torch.zeros(1), torch.ones(1)), "rate"),
        (Dirichlet(2, dtype=F64), (torch.tensor([-1.0, 0.0]),), "concentration"),
        (
            NormalGamma(1, dtype=F64),
            (torch.zeros(1), torch.ones(1), -torch.ones(1), torch.zeros(1)),
            "kappa",
        ),
        (
            NormalGamma(1, dtype=F64),
            (torch.ones(1), -0.5 * torch.ones(1), torch.zeros(1), torch.zeros(1)),
            "rate b",
        ),
        (Gamma(1, dtype=F64), (torch.zeros(1), torch.tensor([float("nan")])), "non-finite"),
        (
            NormalWishart(1, dtype=F64),
            (torch.zeros(1), torch.ones(1), -torch.ones(1, 1), torch.zeros(1)),
            "beta",
        ),
        (
            NormalWishart(1, dtype=F64),
            (torch.zeros(1), -torch.ones(1), -torch.ones(1, 1), -torch.ones(1)),
            "nu",
        ),
        (
            NormalWishart(1, dtype=F64),
            (torch.zeros(1), -torch.ones(1), torch.ones(1, 1), torch.zeros(1)),
            "positive definite",
        ),
    ],
)
def test_invalid_natural_parameters_raise(family, lam, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        family.check_natural(tuple(p.to(F64) for p in lam), "prior")


def test_constructor_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="dim must be >= 2"):
        Dirichlet(1)
    with pytest.raises(ValueError, match="n_classes"):
        Categorical(3, n_classes=1)
    with pytest.raises(TypeError, match="n_classes"):
        Categorical(3, n_classes=2.0)
    with pytest.raises(ValueError, match="dim_pairs"):
        NormalGamma(0)
    with pytest.raises(ValueError, match="a, b"):
        Beta(1, dtype=F64).natural_from_shapes(torch.tensor([1.0]), torch.tensor([-2.0]))
    with pytest.raises(ValueError, match="d must be"):
        NormalWishart(0)
    with pytest.raises(ValueError, match="m0, beta, w, nu"):
        NormalWishart(2, dtype=F64).natural_from_moments(torch.zeros(2), 1.0, torch.eye(2), 0.5)
    with pytest.raises(ValueError, match="m0, beta, w, nu"):
        NormalWishart(2, dtype=F64).natural_from_moments(torch.zeros(2), -1.0, torch.eye(2), 3.0)
    with pytest.raises(ValueError, match="probs"):
        Categorical(2, n_classes=2, dtype=F64).natural_from_probs(torch.ones(2, 2))


def test_mean_and_variance_accessors_match_torch_distributions() -> None:
    """Beta, Gamma and Dirichlet moments against torch.distributions (closed forms, 1e-12)."""
    beta, gamma, dirichlet = Beta(3, dtype=F64), Gamma(3, dtype=F64), Dirichlet(4, dtype=F64)
    a, b = torch.tensor([0.5, 2.0, 7.0], dtype=F64), torch.tensor([3.0, 0.2, 1.5], dtype=F64)
    alpha = torch.tensor([0.3, 1.0, 2.5, 6.0], dtype=F64)
    cases = [
        (beta.mean_var(beta.natural_from_shapes(a, b)), torch.distributions.Beta(a, b)),
        (gamma.mean_var(gamma.natural_from_shape_rate(a, b)), torch.distributions.Gamma(a, b)),
        (
            dirichlet.mean_var(dirichlet.natural_from_concentration(alpha)),
            torch.distributions.Dirichlet(alpha),
        ),
    ]
    for (mean, var), ref in cases:
        assert_close(mean, ref.mean, rtol=1e-12, atol=1e-12)
        assert_close(var, ref.variance, rtol=1e-12, atol=1e-12)
    # the Dirichlet covariance against 200 000 draws: every entry within 5 standard errors
    _, cov = dirichlet.mean_cov(dirichlet.natural_from_concentration(alpha))
    draws = torch.distributions.Dirichlet(alpha).sample((200_000,))
    centred = draws - draws.mean(0)
    prods = centred[:, :, None] * centred[:, None, :]
    z = (prods.mean(0) - cov) / (prods.std(0) / 200_000**0.5)
    assert_close(z, torch.zeros_like(z), rtol=0.0, atol=5.0)


def test_one_dimensional_families_take_python_numbers() -> None:
    """A 1-D family takes scalars where it takes (1,) tensors, with the same result."""
    pairs = [
        (
            Beta(1, dtype=F64).natural_from_shapes(2.0, 3.0),
            Beta(1, dtype=F64).natural_from_shapes(torch.tensor([2.0]), torch.tensor([3.0])),
        ),
        (
            Gamma(1, dtype=F64).natural_from_shape_rate(2.0, torch.tensor(0.5)),
            Gamma(1, dtype=F64).natural_from_shape_rate(torch.tensor([2.0]), torch.tensor([0.5])),
        ),
        (
            NormalGamma(1, dtype=F64).natural_from_moments(0.5, 2.0, 3.0, 1.5),
            NormalGamma(1, dtype=F64).natural_from_moments(*torch.tensor([[0.5, 2.0, 3.0, 1.5]]).T),
        ),
        (
            NormalWishart(1, dtype=F64).natural_from_moments(0.5, 1.0, 2.0, 3.0),
            NormalWishart(1, dtype=F64).natural_from_moments(
                torch.tensor([0.5]), 1.0, torch.tensor([[2.0]]), 3.0
            ),
        ),
    ]
    for scalar, tensor in pairs:
        for a, b in zip(scalar, tensor, strict=True):
            assert_close(a, b.to(F64), rtol=0.0, atol=0.0)
    with pytest.raises(ValueError, match="shape"):  # a scalar for a 2-D family is an error
        Beta(2, dtype=F64).natural_from_shapes(2.0, 3.0)
