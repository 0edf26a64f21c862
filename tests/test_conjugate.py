"""Conjugate Bayes is one BLR step with rho = 1 (Eq 54), against closed forms and scipy.

Posteriors and log marginal likelihoods must agree to 1e-10 in float64: every quantity is a
short sum of lgamma / log / solve terms with no cancellation beyond ~1e-13.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import special, stats
from torch.testing import assert_close

from blrlib import conjugate
from blrlib.families import Beta, Dirichlet, Gamma, Gaussian, NormalGamma

F64 = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-10}


def test_beta_bernoulli() -> None:
    q = Beta(2, dtype=F64)
    a0, b0 = torch.tensor([2.0, 0.5]), torch.tensor([3.0, 0.5])
    prior = q.natural_from_shapes(a0, b0)
    y = torch.bernoulli(torch.tensor([0.3, 0.8]).expand(25, 2))
    post = conjugate.posterior(q, prior, conjugate.BernoulliLikelihood(), y)
    a, b = q.shapes(post)
    assert_close(a, a0 + y.sum(0), **TOL)
    assert_close(b, b0 + (1 - y).sum(0), **TOL)
    lml = special.betaln(a.numpy(), b.numpy()) - special.betaln(a0.numpy(), b0.numpy())
    got = conjugate.log_marginal_likelihood(q, prior, post, conjugate.BernoulliLikelihood(), y)
    assert_close(got, torch.tensor(lml.sum()), **TOL)


def test_gamma_poisson() -> None:
    q = Gamma(2, dtype=F64)
    a0, b0 = torch.tensor([1.5, 4.0]), torch.tensor([0.5, 2.0])
    prior = q.natural_from_shape_rate(a0, b0)
    y = torch.poisson(torch.tensor([3.0, 0.7]).expand(30, 2))
    lik = conjugate.PoissonLikelihood()
    post = conjugate.posterior(q, prior, lik, y)
    a, b = q.shape_rate(post)
    assert_close(a, a0 + y.sum(0), **TOL)
    assert_close(b, b0 + 30, **TOL)
    an, bn, a0n, b0n = (t.numpy() for t in (a, b, a0, b0))
    lml = (
        a0n * np.log(b0n)
        - special.gammaln(a0n)
        + special.gammaln(an)
        - an * np.log(bn)
        - special.gammaln(y.numpy() + 1).sum(0)
    )
    got = conjugate.log_marginal_likelihood(q, prior, post, lik, y)
    assert_close(got, torch.tensor(lml.sum()), **TOL)


def test_dirichlet_categorical() -> None:
    q = Dirichlet(4, dtype=F64)
    alpha0 = torch.tensor([0.5, 1.0, 2.0, 3.0])
    prior = q.natural_from_concentration(alpha0)
    y = torch.multinomial(torch.tensor([0.1, 0.2, 0.3, 0.4]), 40, replacement=True).to(F64)
    lik = conjugate.CategoricalLikelihood()
    post = conjugate.posterior(q, prior, lik, y)
    counts = torch.bincount(y.long(), minlength=4).to(F64)
    assert_close(q.concentration(post), alpha0 + counts, **TOL)
    a0, n = alpha0.numpy(), counts.numpy()
    lml = (
        special.gammaln(a0.sum())
        - special.gammaln(a0.sum() + n.sum())
        + (special.gammaln(a0 + n) - special.gammaln(a0)).sum()
    )
    got = conjugate.log_marginal_likelihood(q, prior, post, lik, y)
    assert_close(got, torch.tensor(lml), **TOL)


def test_normal_normal_known_variance() -> None:
    q = Gaussian(2, dtype=F64)
    m0, s0 = torch.tensor([0.5, -1.0]), torch.tensor([[2.0, 0.3], [0.3, 1.0]])
    prior = q.natural_from_mean_precision(m0, s0)
    sigma2, n = 0.7, 12
    y = torch.randn(n, 2) + torch.tensor([1.0, 2.0])
    lik = conjugate.GaussianLikelihood(sigma2)
    m, cov = q.mean_cov(conjugate.posterior(q, prior, lik, y))
    prec = s0 + n / sigma2 * torch.eye(2)
    assert_close(torch.linalg.inv(cov), prec, **TOL)
    assert_close(m, torch.linalg.solve(prec, s0 @ m0 + y.sum(0) / sigma2), **TOL)
    # marginal: vec(y) ~ N(1_n (x) m0, sigma^2 I + 1 1^T (x) S0^-1)
    cov_y = sigma2 * np.eye(2 * n) + np.kron(np.ones((n, n)), np.linalg.inv(s0.numpy()))
    lml = stats.multivariate_normal(np.tile(m0.numpy(), n), cov_y).logpdf(y.numpy().ravel())
    post = conjugate.posterior(q, prior, lik, y)
    got = conjugate.log_marginal_likelihood(q, prior, post, lik, y)
    assert_close(got, torch.tensor(lml), **TOL)


def test_bayesian_linear_regression_is_one_step() -> None:
    """The ridge example below Eq 54: lam* = (X^T y / s2, -(delta I + X^T X / s2) / 2)."""
    n, p, delta, sigma2 = 40, 3, 2.0, 0.25
    x = torch.randn(n, p)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + sigma2**0.5 * torch.randn(n)
    q = Gaussian(p, dtype=F64)
    prior = q.natural_from_mean_precision(torch.zeros(p), delta * torch.eye(p))
    lik = conjugate.GaussianLikelihood(sigma2, design=x)
    post = conjugate.posterior(q, prior, lik, y)
    assert_close(post[0], x.T @ y / sigma2, **TOL)
    assert_close(post[1], -0.5 * (delta * torch.eye(p) + x.T @ x / sigma2), **TOL)
    cov_y = sigma2 * np.eye(n) + x.numpy() @ x.numpy().T / delta
    lml = stats.multivariate_normal(np.zeros(n), cov_y).logpdf(y.numpy())
    got = conjugate.log_marginal_likelihood(q, prior, post, lik, y)
    assert_close(got, torch.tensor(lml), **TOL)


def test_normal_gamma_unknown_precision() -> None:
    q = NormalGamma(1, dtype=F64)
    m0, k0, a0, b0 = 0.5, 2.0, 3.0, 1.5
    prior = q.natural_from_moments(*(torch.tensor([v]) for v in (m0, k0, a0, b0)))
    y = 1.0 + 0.5 * torch.randn(20, 1)
    lik = conjugate.NormalGammaLikelihood()
    post = conjugate.posterior(q, prior, lik, y)
    n, ybar = 20, y.mean().item()
    kn = k0 + n
    expected = (
        (k0 * m0 + n * ybar) / kn,
        kn,
        a0 + n / 2,
        b0 + 0.5 * ((y - ybar) ** 2).sum().item() + k0 * n * (ybar - m0) ** 2 / (2 * kn),
    )
    for got, want in zip(q.moments(post), expected, strict=True):
        assert_close(got, torch.tensor([want]), **TOL)
    an, bn = expected[2], expected[3]
    lml = (
        special.gammaln(an)
        - special.gammaln(a0)
        + a0 * np.log(b0)
        - an * np.log(bn)
        + 0.5 * np.log(k0 / kn)
        - 0.5 * n * np.log(2 * np.pi)
    )
    got = conjugate.log_marginal_likelihood(q, prior, post, lik, y)
    assert_close(got, torch.tensor(lml), **TOL)


def test_site_terms_are_the_natural_parameters_of_each_likelihood() -> None:
    """grad_mu E_q[log p(y_i | theta)] = lam~_i(y_i) (Eq 54), whatever q is."""
    q = Beta(1, dtype=F64)
    y = torch.tensor([[1.0], [0.0]])
    for shapes in ((1.0, 1.0), (5.0, 0.3)):
        lam = q.natural_from_shapes(torch.tensor([shapes[0]]), torch.tensor([shapes[1]]))
        sites = conjugate.site_terms(q, lam, conjugate.BernoulliLikelihood(), y)
        assert_close(sites[0], (torch.tensor([1.0]), torch.tensor([0.0])))
        assert_close(sites[1], (torch.tensor([0.0]), torch.tensor([1.0])))
    g = Gaussian(2, dtype=F64)
    x = torch.randn(3, 2)
    yr = torch.randn(3)
    lam = g.natural_from_mean_precision(torch.zeros(2), torch.eye(2))
    sites = conjugate.site_terms(g, lam, conjugate.GaussianLikelihood(0.5, design=x), yr)
    for i, (s1, s2) in enumerate(sites):  # below Eq 54: (y_i x_i, -x_i x_i^T / 2) / sigma^2
        assert_close(s1, yr[i] * x[i] / 0.5, **TOL)
        assert_close(s2, -0.5 * torch.outer(x[i], x[i]) / 0.5, **TOL)


def test_rho_one_from_any_start_and_geometric_rate_below_one() -> None:
    """lam_t - lam* = (1 - rho)^t (lam_0 - lam*): the conjugate natural gradient is constant."""
    q = Gamma(1, dtype=F64)
    prior = q.natural_from_shape_rate(torch.tensor([2.0]), torch.tensor([1.0]))
    start = q.natural_from_shape_rate(torch.tensor([7.0]), torch.tensor([0.2]))
    y = torch.poisson(torch.full((15, 1), 2.0))
    lik = conjugate.PoissonLikelihood()
    exact = conjugate.posterior(q, prior, lik, y)
    assert_close(conjugate.posterior(q, prior, lik, y, lam=start), exact, **TOL)
    rho, lam = 0.3, start
    for t in range(1, 16):
        lam = conjugate.posterior(q, prior, lik, y, rho=rho, lam=lam)
        for got, s, e in zip(lam, start, exact, strict=True):
            assert_close(got - e, (1 - rho) ** t * (s - e), **TOL)


def test_bad_input_raises() -> None:
    q = Beta(1, dtype=F64)
    prior = q.natural_from_shapes(torch.ones(1), torch.ones(1))
    lik = conjugate.BernoulliLikelihood()
    with pytest.raises(ValueError, match="non-finite"):
        conjugate.posterior(q, prior, lik, torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="shape"):
        conjugate.posterior(q, prior, lik, torch.ones(3, 2))
    with pytest.raises(ValueError, match="0 or 1"):
        conjugate.posterior(q, prior, lik, torch.tensor([[2.0]]))
    bad_prior = (torch.tensor([-1.5]), torch.zeros(1))
    with pytest.raises(ValueError, match="prior"):
        conjugate.posterior(q, bad_prior, lik, torch.ones(2, 1))
    with pytest.raises(TypeError, match="family"):
        conjugate.posterior(q, prior, conjugate.PoissonLikelihood(), torch.ones(2, 1))
    with pytest.raises(ValueError, match="rho"):
        conjugate.posterior(q, prior, lik, torch.ones(2, 1), rho=1.5)
    with pytest.raises(ValueError, match="noise_var"):
        g = Gaussian(1, dtype=F64)
        lam = g.natural_from_mean_precision(torch.zeros(1), torch.eye(1))
        conjugate.posterior(g, lam, conjugate.GaussianLikelihood(-1.0), torch.ones(2, 1))
    with pytest.raises(ValueError, match="integers"):
        d = Dirichlet(3, dtype=F64)
        conjugate.posterior(
            d,
            d.natural_from_concentration(torch.ones(3)),
            conjugate.CategoricalLikelihood(),
            torch.tensor([3.0]),
        )


def test_online_steps_are_sequential_bayes_and_the_ridge_forecaster() -> None:
    """One BLR step per observation (rho = 1): the last iterate is the batch posterior, and
    iterate t's mean is scikit-learn's ridge fit on the first t points (alpha = delta sigma^2).
    Float64 solves of 3 x 3 systems: 1e-10. With rho = 0.5, every observation counts half:
    the result is the posterior with the noise variance doubled."""
    from sklearn.linear_model import Ridge

    gen = torch.Generator().manual_seed(0)
    X = torch.randn(12, 3, generator=gen, dtype=F64)
    y = X @ torch.tensor([1.0, -1.0, 0.5], dtype=F64) + 0.3 * torch.randn(12, generator=gen)
    q, delta, noise = Gaussian(3, dtype=F64), 2.0, 0.09
    prior = q.natural_from_mean_precision(torch.zeros(3), delta * torch.eye(3))
    lik = conjugate.GaussianLikelihood(noise, design=X)
    path = conjugate.online(q, prior, lik, y)
    batch = conjugate.posterior(q, prior, lik, y)
    for a, b in zip(path[-1], batch, strict=True):
        assert_close(a, b, rtol=1e-10, atol=1e-10)
    for t in (1, 4, 12):
        ridge = Ridge(alpha=delta * noise, fit_intercept=False).fit(X[:t].numpy(), y[:t].numpy())
        mean = q.mean_cov(path[t])[0]
        assert_close(mean, torch.from_numpy(ridge.coef_), rtol=1e-10, atol=1e-10)
    half = conjugate.online(q, prior, lik, y, rho=0.5)[-1]
    doubled = conjugate.posterior(q, prior, conjugate.GaussianLikelihood(2 * noise, design=X), y)
    for a, b in zip(half, doubled, strict=True):
        assert_close(a, b, rtol=1e-10, atol=1e-10)
