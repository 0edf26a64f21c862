"""The mixture with learned weights: its exponential-family identities and its natural gradient.

Every check is deterministic in float64 except the log-density reference, so the tolerances are
assert_close's float64 defaults unless stated.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributions as D
from torch import Tensor
from torch.testing import assert_close

from blrlib import blr
from blrlib.estimators import natural_gradient
from blrlib.families import GaussianMixture, LearnedGaussianMixture

F64 = torch.float64
K, P = 3, 2
WEIGHTS = torch.tensor([0.2, 0.5, 0.3], dtype=F64)


def _lam(family: LearnedGaussianMixture):
    m = torch.randn(K, P, dtype=F64)
    a = torch.randn(K, P, P, dtype=F64)
    prec = a @ a.mT / P + 0.5 * torch.eye(P, dtype=F64)
    return family.natural_from_moments(m, prec, WEIGHTS), m, prec


def test_moments_and_weights_round_trip() -> None:
    q = LearnedGaussianMixture(K, P, dtype=F64)
    lam, m, prec = _lam(q)
    mean, cov = q.mean_cov(lam)
    assert_close(q.weights_of(lam), WEIGHTS)
    assert_close(mean, m)
    assert_close(cov, torch.linalg.inv(prec))
    for a, b in zip(q.to_natural(q.to_expectation(lam)), lam, strict=True):
        assert_close(a, b)


def test_expectation_is_gradient_of_log_partition() -> None:
    """mu = grad A(lam), including mu_c = pi_c for the weights' natural parameters."""
    q = LearnedGaussianMixture(K, P, dtype=F64)
    lam = tuple(p.requires_grad_(True) for p in _lam(q)[0])
    grads = torch.autograd.grad(q.log_partition(lam), lam)
    mu = q.to_expectation(lam)
    assert_close(grads[0], mu[0])
    assert_close(0.5 * (grads[1] + grads[1].mT), mu[1])
    assert_close(grads[2], WEIGHTS[:-1])


def test_log_prob_matches_torch_and_fixed_weights() -> None:
    q = LearnedGaussianMixture(K, P, dtype=F64)
    lam, m, prec = _lam(q)
    ref = D.MixtureSameFamily(
        D.Categorical(WEIGHTS), D.MultivariateNormal(m, precision_matrix=prec)
    )
    theta = torch.randn(7, P, dtype=F64)
    assert_close(q.log_prob(lam, theta), ref.log_prob(theta))
    fixed = GaussianMixture(WEIGHTS, P, dtype=F64)
    assert_close(q.log_prob(lam, theta), fixed.log_prob(lam[:2], theta))
    draws = q.rsample(lam, 20_000, generator=torch.Generator().manual_seed(0))
    se = draws.std(0) / 20_000**0.5  # sample mean within 5 standard errors
    assert_close(draws.mean(0), ref.mean, rtol=0.0, atol=float(5 * se.max()))


def _expected_cos(q: LearnedGaussianMixture, mu) -> Tensor:
    """E_q[sum_p cos theta_p] = sum_k pi_k sum_p cos(m_kp) exp(-cov_kpp / 2), exactly."""
    mean, cov = q.mean_cov_from_expectation(mu)
    pi = torch.cat((mu[2], 1 - mu[2].sum(0, keepdim=True)))
    per = (torch.cos(mean) * torch.exp(-0.5 * torch.diagonal(cov, dim1=-2, dim2=-1))).sum(-1)
    return (pi * per).sum()


def test_surrogate_gives_the_exact_natural_gradient() -> None:
    """With exact per-component E[f], E[grad f], E[Hessian f], the surrogate's gradient wrt mu
    is the gradient of E_q[f](mu) itself, for the weights as for the components (f = sum cos)."""
    q = LearnedGaussianMixture(K, P, dtype=F64)
    lam = _lam(q)[0]
    mu = tuple(p.detach().requires_grad_(True) for p in q.to_expectation(lam))
    exact = torch.autograd.grad(_expected_cos(q, mu), mu)
    mean, cov = q.mean_cov(lam)
    damp = torch.exp(-0.5 * torch.diagonal(cov, dim1=-2, dim2=-1))
    values = (torch.cos(mean) * damp).sum(-1)
    grad = -torch.sin(mean) * damp
    hess = torch.diag_embed(-torch.cos(mean) * damp)
    mu = tuple(p.detach().requires_grad_(True) for p in q.to_expectation(lam))
    got = torch.autograd.grad(q.expected_loss_surrogate(mu, grad, hess, values), mu)
    for a, b in zip(got, exact, strict=True):
        assert_close(a, b)


def test_engine_mc_gradient_matches_exact_within_mc_error() -> None:
    """The engine's Monte Carlo natural gradient (Eq 4) of E_q[sum cos]: many draws, 5 s.e."""
    q = LearnedGaussianMixture(K, P, dtype=F64)
    lam = _lam(q)[0]
    mu = tuple(p.detach().requires_grad_(True) for p in q.to_expectation(lam))
    exact = torch.autograd.grad(_expected_cos(q, mu), mu)
    runs = [
        natural_gradient(
            q, lam, lambda t: torch.cos(t).sum(), estimator="mc", n_samples=500,
            generator=torch.Generator().manual_seed(s),
        )
        for s in range(8)
    ]  # fmt: skip
    for i, ref in enumerate(exact):
        est = torch.stack([r[i] for r in runs])
        se = est.std(0) / 8**0.5
        assert_close(est.mean(0), ref, rtol=0.0, atol=float(5 * se.max() + 1e-12))


def test_blr_learns_the_weights_of_a_mixture_target() -> None:
    """The loss -log of a well-separated 1-D two-Gaussian mixture (weights 0.8, 0.2) is matched:
    the fixed point is the target itself, and the learned weights reach 0.8/0.2 within 0.05
    (the Monte Carlo noise of the last steps, rho = 0.1 and 16 draws per component)."""
    target = D.MixtureSameFamily(
        D.Categorical(torch.tensor([0.8, 0.2], dtype=F64)),
        D.Normal(torch.tensor([-3.0, 3.0], dtype=F64), torch.tensor([0.5, 0.5], dtype=F64)),
    )
    q = LearnedGaussianMixture(2, 1, dtype=F64)
    lam = q.natural_from_moments(
        torch.tensor([[-1.0], [1.0]], dtype=F64), torch.ones(2, 1, 1, dtype=F64), [0.5, 0.5]
    )
    path = blr.run(
        q, lam, lambda t: -target.log_prob(t[0]), rho=0.1, n_steps=150, estimator="mc",
        n_samples=16, hessian="reparam", generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert_close(q.weights_of(path[-1]), torch.tensor([0.8, 0.2], dtype=F64), rtol=0, atol=0.05)
    assert_close(q.mean_cov(path[-1])[0].flatten(), torch.tensor([-3.0, 3.0]), rtol=0, atol=0.15)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="n_components"):
        LearnedGaussianMixture(0, 1)
    q = LearnedGaussianMixture(2, 1, dtype=F64)
    m, prec = torch.zeros(2, 1, dtype=F64), torch.ones(2, 1, 1, dtype=F64)
    with pytest.raises(ValueError, match="weights"):
        q.natural_from_moments(m, prec, [0.5, 0.6])
    with pytest.raises(ValueError, match="weights"):
        q.natural_from_moments(m, prec, [1.0, 0.0])
    lam = q.natural_from_moments(m, prec, [0.5, 0.5])
    mu = q.to_expectation(lam)
    with pytest.raises(ValueError, match="values"):
        q.expected_loss_surrogate(mu, torch.zeros(2, 1), torch.zeros(2, 1, 1))
    with pytest.raises(TypeError, match="lam must be a tuple of 3"):
        q.check_natural(lam[:2])
    with pytest.raises(ValueError, match="estimator"):
        blr.step(q, lam, rho=0.5, estimator="exact", expected_loss=lambda mu: mu[0].sum())
