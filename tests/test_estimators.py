"""Estimators of the natural gradient (Eq 4, 10-11, 45 and App C-D of Khan & Rue 2023).

Each estimator is checked against an exact reference: the delta method on a quadratic, Monte
Carlo within 5 of its standard errors (computed from per-sample quantities of independent draws),
Bonnet's and Price's theorems on losses whose Gaussian expectation is known in closed form, and
Eq 4 against the inverse Fisher matrix times the gradient.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, hessian, vmap
from torch.testing import assert_close

from blrlib import blr, families
from blrlib.estimators import Estimator, Hessian, expected_grad_hess, natural_gradient
from tests import scenarios

F64 = torch.float64
N_MC = 4000  # draws per Monte Carlo estimate
N_REF = 4000  # independent draws used only to measure the per-sample standard deviation
N_SE = 5.0  # a 5-standard-error band: a two-sided 5-sigma event has probability 6e-7

# A mean and a covariance with correlations, used for every Gaussian candidate below.
MEAN = torch.tensor([2.5, -2.0, 1.2], dtype=F64)
COV = torch.tensor([[0.5, 0.1, -0.05], [0.1, 0.4, 0.08], [-0.05, 0.08, 0.6]], dtype=F64)


def _candidate(kind: str):
    """(q, lam) for N(MEAN, COV) (full) or N(MEAN, diag(COV)) (diagonal)."""
    if kind == "full":
        q = families.Gaussian(3, dtype=F64)
        return q, q.natural_from_moments(MEAN, torch.linalg.inv(COV))
    q = families.DiagGaussian(3, dtype=F64)
    return q, q.natural_from_moments(MEAN, 1.0 / torch.diagonal(COV))


def _cov_matrix(q, mu) -> torch.Tensor:
    """The covariance of q as a (P, P) matrix, differentiable in mu."""
    _, cov = q.mean_cov_from_expectation(mu)
    return cov if cov.dim() == 2 else torch.diag(cov)


def _flat(params) -> torch.Tensor:
    return torch.cat([p.reshape(-1) for p in params])


def _per_sample_natural_gradient(q, lam, loss, hess_fn=None) -> torch.Tensor:
    """Eq 10-11 at single draws, (g_i - H_i m, H_i / 2) flattened: one row per draw.

    The Monte Carlo natural gradient is the average of these rows over its draws, so their
    standard deviation over ``N_REF`` independent draws, divided by sqrt(N_MC), is its standard
    error. ``hess_fn(theta, g)`` replaces the autograd Hessian (for the reparam estimator).
    """
    m, cov = q.mean_cov(lam)
    gen = torch.Generator().manual_seed(1234)  # independent of the draws being tested
    thetas = q.sample(lam, N_REF, generator=gen)
    g = vmap(grad(loss))(thetas)
    h = vmap(hessian(loss))(thetas) if hess_fn is None else hess_fn(thetas, g)
    if cov.dim() == 1:  # diagonal family: only the diagonal of the Hessian enters
        h = torch.diagonal(h, dim1=-2, dim2=-1) if h.dim() == 3 else h
        first = g - h * m
    else:
        first = g - (h @ m.unsqueeze(-1)).squeeze(-1)
    return torch.cat([first, 0.5 * h.reshape(N_REF, -1)], dim=1)


def _standard_error(per_sample: torch.Tensor) -> torch.Tensor:
    return per_sample.std(0) / N_MC**0.5


def _assert_within_se(estimate: torch.Tensor, target: torch.Tensor, se: torch.Tensor) -> None:
    """|estimate - target| <= N_SE standard errors elementwise.

    Entries with a zero standard error (exact in every draw) must agree to rounding (1e-12).
    """
    exact = se == 0
    assert_close(estimate[exact], target[exact], rtol=1e-12, atol=1e-12)
    z = (estimate[~exact] - target[~exact]) / se[~exact]
    assert_close(z, torch.zeros_like(z), rtol=0, atol=N_SE)


def _natural_gradient_mc(q, lam, loss, **options) -> torch.Tensor:
    gen = torch.Generator().manual_seed(99)
    return _flat(
        natural_gradient(q, lam, loss, estimator="mc", n_samples=N_MC, generator=gen, **options)
    )


# ---------------------------------------------------------------------------- a quadratic


def _ridge_expected_loss(q, X, y, noise, delta):
    """E_q[bar-ell] of the ridge loss in closed form (Sec 1.3.3), as a function of mu."""

    def expected_loss(mu):
        m, _ = q.mean_cov_from_expectation(mu)
        c = _cov_matrix(q, mu)
        resid = (y - X @ m) @ (y - X @ m) + torch.trace(X.T @ X @ c)
        return 0.5 * resid / noise**2 + 0.5 * delta * (m @ m + torch.trace(c))

    return expected_loss


@pytest.mark.parametrize("kind", ["full", "diag"])
def test_delta_is_exact_on_a_quadratic(kind):
    """App C: on a quadratic the delta method is exact, and both give Eq 10-11 at the mean.

    Both sides are computed in float64 from the same data; 1e-10 allows for rounding only.
    """
    X, y, loss, _, _ = scenarios.ridge(noise=0.5, delta=2.0)
    q, lam = _candidate(kind)
    delta = natural_gradient(q, lam, loss, estimator="delta")
    exact = natural_gradient(
        q, lam, estimator="exact", expected_loss=_ridge_expected_loss(q, X, y, 0.5, 2.0)
    )
    for a, b in zip(delta, exact, strict=True):
        assert_close(a, b, rtol=1e-10, atol=1e-10)
    # Eq 10-11: grad_mu1 = E[g] - E[H] m and grad_mu2 = E[H] / 2, with g, H at m for a quadratic
    H = X.T @ X / 0.25 + 2.0 * torch.eye(3, dtype=F64)
    g = torch.func.grad(loss)(MEAN)
    if kind == "diag":
        H = torch.diagonal(H)
        eq10, eq11 = g - H * MEAN, 0.5 * H
    else:
        eq10, eq11 = g - H @ MEAN, 0.5 * H
    assert_close(delta[0], eq10, rtol=1e-10, atol=1e-10)
    assert_close(delta[1], eq11, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["full", "diag"])
def test_mc_agrees_with_exact_on_a_quadratic(kind):
    """App D: Monte Carlo is unbiased; with autograd Hessians its Hessian part is exact.

    The Hessian of a quadratic is the same at every draw, so grad_mu2 (= E[H] / 2) has a zero
    standard error and must match to rounding; grad_mu1 must lie within 5 standard errors.
    """
    X, y, loss, _, _ = scenarios.ridge(noise=0.5, delta=2.0)
    q, lam = _candidate(kind)
    exact = _flat(
        natural_gradient(
            q, lam, estimator="exact", expected_loss=_ridge_expected_loss(q, X, y, 0.5, 2.0)
        )
    )
    se = _standard_error(_per_sample_natural_gradient(q, lam, loss))
    assert (se[:3] > 0).all() and (se[3:] == 0).all()  # only the mean part is random
    _assert_within_se(_natural_gradient_mc(q, lam, loss), exact, se)


def _stein_hessian(q, lam):
    """Per-draw Price/Stein estimate S (theta - m) g^T (symmetrised), or its diagonal."""
    m, cov = q.mean_cov(lam)

    def hess_fn(thetas, g):
        if cov.dim() == 1:
            return (thetas - m) / cov * g
        outer = torch.linalg.solve(cov, (thetas - m).T).T.unsqueeze(-1) * g.unsqueeze(-2)
        return 0.5 * (outer + outer.mT)

    return hess_fn


@pytest.mark.parametrize("kind", ["full", "diag"])
def test_reparam_hessian_agrees_with_the_true_hessian(kind):
    """Price's theorem in Stein form, E[S (theta - m) g^T] = E[H]: within 5 standard errors."""
    X, y, loss, _, _ = scenarios.ridge(noise=0.5, delta=2.0)
    q, lam = _candidate(kind)
    H = X.T @ X / 0.25 + 2.0 * torch.eye(3, dtype=F64)
    if kind == "diag":
        H = torch.diagonal(H)
    gen = torch.Generator().manual_seed(7)
    _, hess = expected_grad_hess(
        q,
        lam,
        loss,
        estimator=Estimator.MC,
        hessian_method=Hessian.REPARAM,
        n_samples=N_MC,
        generator=gen,
    )
    per_sample = _per_sample_natural_gradient(q, lam, loss, _stein_hessian(q, lam))
    se = _standard_error(2.0 * per_sample[:, 3:])  # the rows hold H_i / 2
    assert (se > 0).all()
    _assert_within_se(hess.reshape(-1), H.reshape(-1), se)


# ---------------------------------------------------------------------------- Bonnet and Price

A = torch.tensor([0.5, -0.4, 0.3], dtype=F64)


def _exp_loss(theta):
    return torch.exp(A @ theta)


def _exp_expected(q):
    """E[exp(a^T theta)] = exp(a^T m + a^T Sigma a / 2) (the Gaussian m.g.f.)."""

    def expected_loss(mu):
        m, _ = q.mean_cov_from_expectation(mu)
        return torch.exp(A @ m + 0.5 * A @ _cov_matrix(q, mu) @ A)

    return expected_loss


def _cos_loss(theta):
    return torch.cos(theta).sum()


def _cos_expected(q):
    """E[sum_d cos theta_d] = sum_d exp(-Sigma_dd / 2) cos m_d (the characteristic function)."""

    def expected_loss(mu):
        m, _ = q.mean_cov_from_expectation(mu)
        return (torch.exp(-0.5 * torch.diagonal(_cov_matrix(q, mu))) * torch.cos(m)).sum()

    return expected_loss


LOSSES = {"exp": (_exp_loss, _exp_expected), "cos": (_cos_loss, _cos_expected)}


@pytest.mark.parametrize("kind", ["full", "diag"])
@pytest.mark.parametrize("name", ["exp", "cos"])
def test_bonnet_price_on_a_non_quadratic(kind, name):
    """App D: Monte Carlo of E[g] and E[H] gives the gradient of the closed-form E_q[loss].

    The delta method evaluates g and H at the mean only (App C), which is biased here: it must
    miss the exact value by more than the 5-standard-error band that Monte Carlo passes, so this
    test can tell an expectation from a point evaluation.
    """
    loss, expected = LOSSES[name]
    q, lam = _candidate(kind)
    exact = _flat(natural_gradient(q, lam, estimator="exact", expected_loss=expected(q)))
    se = _standard_error(_per_sample_natural_gradient(q, lam, loss))
    _assert_within_se(_natural_gradient_mc(q, lam, loss), exact, se)
    delta = _flat(natural_gradient(q, lam, loss, estimator="delta"))
    random = se > 0  # (entries with zero error, e.g. off-diagonal Hessians of cos, are exact)
    z_delta = (delta[random] - exact[random]).abs() / se[random]
    assert (z_delta > N_SE).all(), f"the delta method is within {N_SE} SE: {z_delta}"


def test_eq4_natural_gradient_is_inverse_fisher_times_gradient():
    """Eq 4: grad_mu E_q[f] = F(lam)^-1 grad_lam E_q[f] with F the Hessian of A(lam).

    Both sides are exact autograd computations in float64 on a well-conditioned F; 1e-8 allows
    for the rounding of the linear solve.
    """
    q, lam = _candidate("diag")
    expected = _exp_expected(q)
    sizes = [p.numel() for p in lam]

    def unflatten(flat):
        return tuple(t.reshape(p.shape) for t, p in zip(flat.split(sizes), lam, strict=True))

    flat_lam = _flat(lam)
    fisher = torch.func.hessian(lambda v: q.log_partition(unflatten(v)))(flat_lam)
    grad_lam = torch.func.grad(lambda v: expected(q.to_expectation(unflatten(v))))(flat_lam)
    natural = _flat(natural_gradient(q, lam, estimator="exact", expected_loss=expected))
    assert_close(natural, torch.linalg.solve(fisher, grad_lam), rtol=1e-8, atol=1e-8)


# ---------------------------------------------------------------------------- Gauss-Newton


@pytest.mark.parametrize("kind", ["full", "diag"])
def test_gauss_newton_is_eq45(kind):
    """Eq 45: sum_i (grad ell_i)(grad ell_i)^T + the prior's Hessian delta I, at the mean.

    The reference sums one autograd gradient per example; both sides are float64 sums of the
    same 60 terms, so they agree to rounding (1e-10).
    """
    X, y, loss = scenarios.logistic(n=60, dim=4, delta=1.5)
    m = torch.tensor([0.3, -0.2, 0.5, 0.1], dtype=F64)
    reference = 1.5 * torch.eye(4, dtype=F64)
    for i in range(60):
        g_i = grad(lambda theta, i=i: loss.per_example(theta)[i])(m)
        reference = reference + torch.outer(g_i, g_i)
    if kind == "full":
        q = families.Gaussian(4, dtype=F64)
        lam = q.natural_from_moments(m, torch.eye(4, dtype=F64))
    else:
        q = families.DiagGaussian(4, dtype=F64)
        lam = q.natural_from_moments(m, torch.ones(4, dtype=F64))
        reference = torch.diagonal(reference)
    g, h = expected_grad_hess(
        q, lam, loss, estimator=Estimator.DELTA, hessian_method=Hessian.GAUSS_NEWTON
    )
    assert_close(h, reference, rtol=1e-10, atol=1e-10)
    assert_close(g, grad(loss)(m), rtol=1e-10, atol=1e-10)


def test_gauss_newton_needs_a_sum_loss():
    X, y, loss = scenarios.logistic(n=20, dim=2)
    q = families.Gaussian(2, dtype=F64)
    lam = q.natural_from_moments(torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64))
    with pytest.raises(TypeError, match="SumLoss"):
        natural_gradient(q, lam, lambda theta: loss(theta), hessian_method="gauss_newton")


# ---------------------------------------------------------------------------- other families


def test_mixture_delta_is_per_component():
    """App E with the delta method: grad and Hessian of the loss at each component's mean."""
    X, y, loss = scenarios.logistic(n=40, dim=2)
    q = families.GaussianMixture(torch.tensor([0.2, 0.5, 0.3], dtype=F64), 2, dtype=F64)
    means = torch.tensor([[-1.0, 0.5], [0.3, 0.2], [2.0, -1.5]], dtype=F64)
    lam = q.natural_from_moments(means, torch.eye(2, dtype=F64).expand(3, 2, 2) * 2.0)
    g, h = expected_grad_hess(q, lam, loss, estimator=Estimator.DELTA)
    assert g.shape == (3, 2) and h.shape == (3, 2, 2)
    # float64 autograd of the same function at the same points: equal up to rounding
    for k in range(3):
        assert_close(g[k], grad(loss)(means[k]), rtol=1e-12, atol=1e-12)
        assert_close(h[k], hessian(loss)(means[k]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("logits", [[0.0, 0.0, 0.0], [-3.0, 0.5, 2.0]])
def test_bernoulli_exact_step_is_the_gibbs_posterior(logits):
    """Sec 4.5: one BLR step with rho = 1 from any lam gives q = exp(-ell) / Z.

    E_q[ell] = sum_d (1 - p_d) ell_d(0) + p_d ell_d(1) is linear in mu = p, so the step sets
    lam = ell(0) - ell(1): the Gibbs posterior, coordinate by coordinate. Rounding only: 1e-12.
    """
    ell0 = torch.tensor([0.3, -1.0, 2.0], dtype=F64)
    ell1 = torch.tensor([1.1, -0.2, 0.5], dtype=F64)
    q = families.Bernoulli(3, dtype=F64)
    lam = (torch.tensor(logits, dtype=F64),)

    def expected_loss(mu):
        return ((1 - mu[0]) * ell0 + mu[0] * ell1).sum()

    new = blr.step(q, lam, rho=1.0, estimator="exact", expected_loss=expected_loss)
    gibbs = torch.exp(-ell1) / (torch.exp(-ell0) + torch.exp(-ell1))
    assert_close(q.to_expectation(new)[0], gibbs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("estimator", ["delta", "mc"])
def test_bernoulli_needs_exact(estimator):
    q = families.Bernoulli(2, dtype=F64)
    with pytest.raises(ValueError, match="estimator"):
        blr.step(q, (torch.zeros(2, dtype=F64),), lambda t: t.sum(), rho=1.0, estimator=estimator,
                 n_samples=1)  # fmt: skip


def test_reparam_needs_monte_carlo():
    q, lam = _candidate("full")
    with pytest.raises(ValueError, match="hessian"):
        natural_gradient(
            q, lam, lambda t: (t**2).sum(), estimator="delta", hessian_method="reparam"
        )
