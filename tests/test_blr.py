"""The engine's reductions (Sec 1.3, 3.2, 5.1 of Khan & Rue 2023) and its input checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from blrlib import blr, families
from blrlib.landscapes import DoubleWell, Wall
from tests import scenarios

F64 = torch.float64


def test_gd_is_torch_sgd():
    """Sec 1.3.1 / Eq 7: N(m, I) + delta method with step rho gives SGD(lr=rho), 100 steps."""
    X, y, loss = scenarios.logistic(n=50, dim=5)
    q = families.FixedCovGaussian(torch.ones(5, dtype=F64))
    lam = q.natural_from_moments(torch.full((5,), 0.3, dtype=F64))
    theta = torch.full((5,), 0.3, dtype=F64, requires_grad=True)
    opt = torch.optim.SGD([theta], lr=0.02)
    for _ in range(100):
        lam = blr.step(q, lam, loss, rho=0.02, estimator="delta")
        opt.zero_grad()
        loss(theta).backward()
        opt.step()
        assert_close(q.mean_cov(lam)[0], theta.detach(), rtol=0, atol=1e-10)


def test_preconditioned_sgd_eq35():
    """Eq 35: a fixed precision S makes the step m <- m - rho S^-1 grad (preconditioned SGD)."""
    X, y, loss = scenarios.logistic(n=30, dim=3)
    S = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 3.0]], dtype=F64)
    q = families.FixedCovGaussian(S)
    m = torch.zeros(3, dtype=F64)
    lam = q.natural_from_moments(m)
    for _ in range(20):
        grad = torch.func.grad(loss)(m)
        m = m - 0.5 * torch.linalg.solve(S, grad)
        lam = blr.step(q, lam, loss, rho=0.5)
        assert_close(q.mean_cov(lam)[0], m, rtol=0, atol=1e-10)


def test_newton_is_blr_with_rho_one():
    """Sec 1.3.2 / Eq 12-13: full Gaussian, delta method, rho = 1 gives Newton's iterates."""
    X, y, loss = scenarios.logistic(n=80, dim=4)
    q = families.Gaussian(4, dtype=F64)
    theta = torch.zeros(4, dtype=F64)
    lam = q.natural_from_moments(theta, torch.eye(4, dtype=F64))
    for _ in range(8):
        hess = torch.func.hessian(loss)(theta)
        theta = theta - torch.linalg.solve(hess, torch.func.grad(loss)(theta))
        lam = blr.step(q, lam, loss, rho=1.0, estimator="delta")
        m, cov = q.mean_cov(lam)
        assert_close(m, theta, rtol=0, atol=1e-10)
    # at convergence the precision is the Hessian at the minimum: the Laplace approximation
    assert_close(torch.linalg.inv(cov), torch.func.hessian(loss)(theta), rtol=1e-8, atol=1e-8)
    assert torch.func.grad(loss)(theta).norm() < 1e-10


@pytest.mark.parametrize("estimator", ["delta", "exact", "mc"])
def test_ridge_in_one_step(estimator):
    """Sec 1.3.3 / Eq 14: one step with rho = 1 lands on ridge and on the exact posterior.

    The delta method and the closed form are exact for a quadratic; with Monte Carlo the Hessian
    is exact at any draw but the mean of the draws is not m, so only the precision is exact.
    """
    X, y, loss, mean, cov = scenarios.ridge()
    q = families.Gaussian(3, dtype=F64)
    lam0 = q.natural_from_moments(
        torch.tensor([1.0, -2.0, 0.5], dtype=F64), 3 * torch.eye(3, dtype=F64)
    )

    def expected_loss(mu):  # E_q[bar-ell] is linear in mu (Sec 1.3.3); noise = 0.5, delta = 2
        m, c = q.mean_cov_from_expectation(mu)
        resid = (y - X @ m) @ (y - X @ m) + torch.trace(X.T @ X @ c)
        return 0.5 * resid / 0.25 + 0.5 * 2.0 * (m @ m + torch.trace(c))

    lam = blr.step(
        q, lam0, loss, rho=1.0, estimator=estimator, expected_loss=expected_loss, n_samples=4
    )
    m, c = q.mean_cov(lam)
    assert_close(c, cov, rtol=1e-8, atol=1e-10)
    if estimator != "mc":
        assert_close(m, mean, rtol=1e-8, atol=1e-10)
        ridge = torch.linalg.solve(X.T @ X + 2.0 * 0.25 * torch.eye(3, dtype=F64), X.T @ y)
        assert_close(m, ridge, rtol=1e-8, atol=1e-10)


def test_conjugate_prior_as_natural_parameter():
    """Eq 54: a prior given as lam_0 gives the same step as the same prior inside the loss."""
    X, y, loss, mean, cov = scenarios.ridge()
    q = families.Gaussian(3, dtype=F64)
    prior = q.natural_from_moments(torch.zeros(3, dtype=F64), 2.0 * torch.eye(3, dtype=F64))
    lam0 = q.natural_from_moments(torch.ones(3, dtype=F64), torch.eye(3, dtype=F64))
    with_prior = blr.step(q, lam0, lambda t: loss.per_example(t).sum(), rho=0.3, prior=prior)
    inside = blr.step(q, lam0, loss, rho=0.3)
    for a, b in zip(with_prior, inside, strict=True):
        assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_rate_one_minus_rho():
    """On a quadratic the iterates approach lam* geometrically: lam_t - lam* = (1 - rho)^t (...)."""
    X, y, loss, mean, cov = scenarios.ridge()
    q = families.Gaussian(3, dtype=F64)
    star = q.natural_from_moments(mean, torch.linalg.inv(cov))
    path = blr.run(
        q,
        q.natural_from_moments(torch.zeros(3, dtype=F64), torch.eye(3, dtype=F64)),
        loss,
        rho=0.3,
        n_steps=10,
    )
    for t, lam in enumerate(path):
        for a, a0, s in zip(lam, path[0], star, strict=True):
            assert_close(a - s, 0.7**t * (a0 - s), rtol=1e-8, atol=1e-10)


def test_fixed_point_is_eq5():
    """Eq 5: at the fixed point, lam* = grad_mu E_q*[-bar-ell] (+ the base-measure term).

    The Gaussian's base measure is constant, so lam* = -grad_mu E_q*[bar-ell]; checked with the
    closed-form expectation of a non-quadratic loss (the wall of Fig 1a).
    """
    loss = Wall()
    q = families.Gaussian(1, dtype=F64)

    def expected_loss(mu):
        m, c = q.mean_cov_from_expectation(mu)
        return loss.expected(m, c[0])

    path = blr.run(
        q,
        q.natural_from_moments(torch.zeros(1, dtype=F64), torch.eye(1, dtype=F64) * 10),
        rho=0.2,
        n_steps=400,
        estimator="exact",
        expected_loss=expected_loss,
    )
    lam = path[-1]
    mu = tuple(p.requires_grad_(True) for p in q.to_expectation(lam))
    grad = torch.autograd.grad(expected_loss(mu), mu)
    for a, g in zip(lam, grad, strict=True):
        assert_close(a, -g, rtol=1e-8, atol=1e-8)


def test_mixture_rule_finds_the_modes():
    """Sec 3.2, Eq 28-30: four components on a loss with four minima end on four distinct minima."""
    loss = DoubleWell()
    K = 4
    q = families.GaussianMixture(torch.full((K,), 1.0 / K, dtype=F64), 2, dtype=F64)
    gen = torch.Generator().manual_seed(1)
    m0 = torch.randn(K, 2, generator=gen, dtype=F64)  # N(0, I) initial means and covariances
    lam = q.natural_from_moments(m0, torch.eye(2, dtype=F64).expand(K, 2, 2))
    path = blr.run(q, lam, loss, rho=0.1, n_steps=150, estimator="mc", n_samples=16, generator=gen)
    means = q.mean_cov(path[-1])[0]
    wells = {tuple(row) for row in torch.sign(means).tolist()}
    assert len(wells) == K, f"components collapsed: {means}"
    # each well is steeper outside than inside, so the averaged gradient (Eq 31) puts a mean
    # about 0.15 inside its minimum; we ask that it sits past the midpoint to the barrier at 0
    assert means.abs().min() > 0.5


# ---------------------------------------------------------------------------- bad input


def _setup():
    X, y, loss = scenarios.logistic(n=20, dim=2)
    q = families.Gaussian(2, dtype=F64)
    lam = q.natural_from_moments(torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64))
    return q, lam, loss


@pytest.mark.parametrize("rho", [0.0, -0.1, 1.5, math.nan, math.inf])
def test_bad_rho(rho):
    q, lam, loss = _setup()
    with pytest.raises(ValueError, match="rho"):
        blr.step(q, lam, loss, rho=rho)


def test_rho_type():
    q, lam, loss = _setup()
    with pytest.raises(TypeError, match="rho"):
        blr.step(q, lam, loss, rho="0.1")


def test_non_positive_precision():
    q, lam, loss = _setup()
    bad = (lam[0], torch.eye(2, dtype=F64) * 0.5)  # eta2 = -S/2 positive means S negative
    with pytest.raises(ValueError, match="lam"):
        blr.step(q, bad, loss, rho=0.5)


def test_non_finite_lam():
    q, lam, loss = _setup()
    with pytest.raises(ValueError, match="lam"):
        blr.step(q, (lam[0] * math.nan, lam[1]), loss, rho=0.5)


def test_mismatched_shapes():
    q, lam, loss = _setup()
    with pytest.raises(ValueError, match="lam"):
        blr.step(q, (torch.zeros(3, dtype=F64), lam[1]), loss, rho=0.5)
    with pytest.raises(ValueError, match="prior"):
        blr.step(q, lam, loss, rho=0.5, prior=(torch.zeros(3, dtype=F64), lam[1]))
    with pytest.raises(TypeError, match="lam"):
        blr.step(q, lam[0], loss, rho=0.5)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("estimator", ["delta", "mc"])
def test_non_finite_loss(bad, estimator):
    q, lam, _ = _setup()
    with pytest.raises(ValueError, match="loss"):
        blr.step(q, lam, lambda t: (t**2).sum() * bad, rho=0.5, estimator=estimator,
                 n_samples=1)  # fmt: skip


def test_non_finite_expected_loss():
    q, lam, _ = _setup()
    with pytest.raises(ValueError, match="expected_loss"):
        blr.step(q, lam, rho=0.5, estimator="exact", expected_loss=lambda mu: mu[0].sum() / 0.0)


def test_non_scalar_loss():
    q, lam, _ = _setup()
    with pytest.raises(ValueError, match="loss"):
        blr.step(q, lam, lambda t: t**2, rho=0.5)


@pytest.mark.parametrize(
    ("option", "value"), [("estimator", "newton"), ("hessian", "bfgs"), ("n_samples", 0)]
)
def test_unknown_options(option, value):
    q, lam, loss = _setup()
    with pytest.raises(ValueError, match=option):
        blr.step(q, lam, loss, rho=0.5, **{option: value})


def test_exact_needs_expected_loss():
    q, lam, loss = _setup()
    with pytest.raises(ValueError, match="expected_loss"):
        blr.step(q, lam, loss, rho=0.5, estimator="exact")


def test_step_leaving_the_domain_is_reported():
    """Newton on a concave region: the precision update goes negative; the error names rho."""
    q = families.Gaussian(1, dtype=F64)
    lam = q.natural_from_moments(torch.zeros(1, dtype=F64), torch.eye(1, dtype=F64))
    with pytest.raises(ValueError, match="rho"):
        blr.step(q, lam, lambda t: -(t**2).sum(), rho=1.0)


def test_mixture_rejects_exact_and_prior():
    q = families.GaussianMixture(torch.tensor([0.5, 0.5], dtype=F64), 1, dtype=F64)
    lam = q.natural_from_moments(
        torch.tensor([[-1.0], [1.0]], dtype=F64), torch.ones(2, 1, 1, dtype=F64)
    )
    with pytest.raises(ValueError, match="estimator"):
        blr.step(q, lam, rho=0.5, estimator="exact", expected_loss=lambda mu: mu[0].sum())
    with pytest.raises(TypeError, match="prior"):
        blr.step(q, lam, lambda t: (t**2).sum(), rho=0.5, prior=lam)
