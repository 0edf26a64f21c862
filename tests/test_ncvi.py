"""Non-conjugate VI (Sec 5.4): global = site form, the engine's gradient, the exact optimum, HMC.

Identities (same arithmetic in a different order) use 1e-10. The BLR's fixed point is compared
with the maximiser of the same ELBO by L-BFGS and Newton steps in (mean, Cholesky factor)
coordinates, run to a gradient of 1e-10: the two then agree to about 1e-10 divided by the
smallest curvature, hence 1e-8 on the moments.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from blrlib import ncvi
from blrlib.estimators import natural_gradient
from blrlib.families import Gaussian

F64 = torch.float64


def _problem(n: int = 80, p: int = 3):
    gen = torch.Generator().manual_seed(0)
    X = torch.cat((torch.randn(n, p - 1, generator=gen, dtype=F64), torch.ones(n, 1, dtype=F64)), 1)
    w = torch.tensor([1.5, -1.0, 0.3], dtype=F64)[:p]
    y = torch.bernoulli(torch.sigmoid(X @ w), generator=gen)
    q = Gaussian(p, dtype=F64)
    prior = q.natural_from_mean_precision(torch.zeros(p, dtype=F64), 0.5 * torch.eye(p, dtype=F64))
    return q, prior, ncvi.LogisticFactors(X, y)


def test_global_and_site_forms_give_the_same_iterates() -> None:
    q, prior, factors = _problem()
    glob = ncvi.run(q, prior, factors, rho=0.6, n_iter=8, form="global")["lam"]
    loc = ncvi.run(q, prior, factors, rho=0.6, n_iter=8, form="local")["lam"]
    for a, b in zip(glob, loc, strict=True):
        for pa, pb in zip(a, b, strict=True):
            assert_close(pa, pb, rtol=1e-10, atol=1e-10)


def test_sites_sum_to_the_engines_natural_gradient() -> None:
    q, prior, factors = _problem()
    lam = ncvi.run(q, prior, factors, rho=1.0, n_iter=2)["lam"][-1]
    sites = ncvi.site_parameters(q, lam, factors)
    total = natural_gradient(q, lam, estimator="exact", expected_loss=lambda mu: factors(mu).sum())
    for s, g in zip(sites, total, strict=True):
        assert_close(s.sum(0), g, rtol=1e-10, atol=1e-10)
    # a logistic site depends on w only through a_i = x_i^T w: its first entry is parallel to x_i
    X = factors.X
    along = (sites[0] * X).sum(-1, keepdim=True) / (X**2).sum(-1, keepdim=True) * X
    assert_close(sites[0], along, rtol=1e-10, atol=1e-10)


def test_fixed_point_is_the_gaussian_vi_optimum() -> None:
    q, prior, factors = _problem()
    lam = ncvi.run(q, prior, factors, rho=1.0, n_iter=30)["lam"][-1]
    best = ncvi.gaussian_vi_optimum(q, prior, factors)
    for a, b in zip(q.mean_cov(lam), q.mean_cov(best), strict=True):
        assert_close(a, b, rtol=0, atol=1e-8)
    assert ncvi.elbo(q, lam, prior, factors) >= ncvi.elbo(q, best, prior, factors) - 1e-10


def test_gaussian_vi_optimum_reaches_its_gradient_tolerance() -> None:
    """The returned q has an ELBO gradient below tol in the coordinates it optimises; with no
    Newton steps L-BFGS alone stops above 1e-10 and the function says so."""
    q, prior, factors = _problem()
    best = ncvi.gaussian_vi_optimum(q, prior, factors, tol=1e-10)
    m, cov = q.mean_cov(best)
    m = m.clone().requires_grad_(True)
    chol = torch.linalg.cholesky(cov).requires_grad_(True)
    mu = (m, chol.tril() @ chol.tril().T + torch.outer(m, m))
    value = factors(mu).sum() - q.kl(q.to_natural(mu), prior)
    grads = torch.autograd.grad(value, (m, chol))
    assert max(grads[0].abs().max(), grads[1].tril().abs().max()) < 1e-9  # rounding of S^-1
    with pytest.raises(RuntimeError, match="Newton"):
        ncvi.gaussian_vi_optimum(q, prior, factors, tol=1e-14, newton_steps=0)


def test_quadrature_matches_monte_carlo() -> None:
    """E[log sigmoid(a)] by 64-node quadrature vs 10^6 draws, within 5 standard errors."""
    factors = ncvi.LogisticFactors(torch.ones(1, 1, dtype=F64), torch.ones(1, dtype=F64))
    mean, var = torch.tensor([0.7], dtype=F64), torch.tensor([4.0], dtype=F64)
    a = mean + var.sqrt() * torch.randn(1_000_000, dtype=F64)
    vals = torch.nn.functional.logsigmoid(a)
    z = (factors.expected_log_lik(mean, var) - vals.mean()) / (vals.std() / 1000.0)
    assert_close(z, torch.zeros_like(z), rtol=0, atol=5.0)


def _gauss_quad(f, m: float, sd: float) -> float:
    """E[f(a)] for a ~ N(m, sd^2) by scipy's adaptive quadrature over m +- 40 sd."""
    from scipy import integrate

    def integrand(a: float) -> float:
        return f(a) * np.exp(-0.5 * ((a - m) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))

    lo, hi = m - 40 * sd, m + 40 * sd
    points = [0.0] if lo < 0 < hi else None
    return integrate.quad(integrand, lo, hi, points=points, limit=500, epsabs=1e-14)[0]


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.parametrize("sd", [0.01, 0.3, 1.0, 1.49, 1.5, 2.0, 3.0, 10.0, 100.0])
def test_quadrature_is_accurate_for_every_variance(sd: float) -> None:
    """E[softplus(a)], its derivatives in the mean and variance (E[sigmoid], E[sigmoid'] / 2)
    and E[sigmoid(a)] against scipy's adaptive quadrature: 1e-11 at the default 64 nodes."""
    from scipy import special

    factors = ncvi.LogisticFactors(torch.ones(1, 1, dtype=F64), torch.zeros(1, dtype=F64))
    for m in (-40.0, -8.0, -3.0, 0.0, 0.7, 8.0, 25.0):
        mean = torch.tensor([m], dtype=F64, requires_grad=True)
        var = torch.tensor([sd**2], dtype=F64, requires_grad=True)
        value = -factors.expected_log_lik(mean, var)  # y = 0: E[softplus(a)]
        d_mean, d_var = torch.autograd.grad(value.sum(), (mean, var))
        refs = [
            _gauss_quad(f, m, sd)
            for f in (
                lambda a: np.logaddexp(0.0, a),
                special.expit,
                lambda a: 0.5 * special.expit(a) * special.expit(-a),
            )
        ]
        got = [value.item(), d_mean.item(), d_var.item()]
        got_sigmoid = ncvi.predictive_probability(mean.detach(), var.detach()).item()
        assert_close(torch.tensor(got), torch.tensor(refs, dtype=F64), rtol=0.0, atol=1e-11)
        assert abs(got_sigmoid - refs[1]) < 1e-11


def test_elbo_at_a_wide_prior_and_many_nodes() -> None:
    """At a prior with variances near 100 the ELBO matches adaptive quadrature to 1e-8 in total,
    at 64 nodes and at 128; more than 128 nodes is refused with a clear message."""
    gen = torch.Generator().manual_seed(1)
    X = 10.0 * torch.randn(20, 1, generator=gen, dtype=F64)
    y = (torch.rand(20, generator=gen, dtype=F64) < 0.5).to(F64)
    mean, var = X[:, 0] * 0.3, X[:, 0] ** 2  # q = N(0.3, 1) on w: sd of a_i = |x_i|
    ref = sum(
        _gauss_quad(lambda a, label=label: label * a - np.logaddexp(0.0, a), m, v**0.5)
        for m, v, label in zip(mean.tolist(), var.tolist(), y.tolist(), strict=True)
    )
    for n in (64, 128):
        got = ncvi.LogisticFactors(X, y, n_points=n).expected_log_lik(mean, var).sum()
        assert abs(got.item() - ref) < 1e-8
    with pytest.raises(ValueError, match="n_points"):
        ncvi.LogisticFactors(X, y, n_points=400)


def test_gaussian_posterior_is_accepted_and_other_types_are_named() -> None:
    from blrlib.infer import GaussianPosterior

    q, prior, factors = _problem()
    lam = ncvi.run(q, prior, factors, rho=1.0, n_iter=5)["lam"][-1]
    post, prior_post = GaussianPosterior(q, lam), GaussianPosterior(q, prior)
    ref = ncvi.elbo(q, lam, prior, factors)
    assert_close(ncvi.elbo(q, post, prior_post, factors), ref, rtol=0.0, atol=0.0)
    with pytest.raises(TypeError, match="lam must be natural parameters"):
        ncvi.elbo(q, [lam[0], lam[1]], prior, factors)
    diag = GaussianPosterior.from_mean_precision(
        torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64)
    )
    with pytest.raises(TypeError, match="does not match"):
        ncvi.elbo(q, diag, prior, factors)


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (torch.ones(3, 2), torch.tensor([0.0, 1.0, 2.0]), "y"),
        (torch.ones(3, 2), torch.tensor([0.0, 1.0]), "y"),
        (torch.full((3, 2), float("nan")), torch.zeros(3), "X"),
    ],
)
def test_bad_input(X: torch.Tensor, y: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ncvi.LogisticFactors(X.to(F64), y.to(F64))


def test_bad_options() -> None:
    q, prior, factors = _problem()
    with pytest.raises(ValueError, match="form"):
        ncvi.run(q, prior, factors, rho=1.0, n_iter=1, form="sites")
    with pytest.raises(ValueError, match="rho"):
        ncvi.run(q, prior, factors, rho=1.5, n_iter=1, form="local")
