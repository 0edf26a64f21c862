"""Laplace: inverse Hessian at the MAP, GGN vs Hessian, diag vs full, and the BLR fixed point."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn
from torch.func import hessian
from torch.testing import assert_close

from blrlib import blr, data
from blrlib.infer.laplace import laplace, output_hessian
from blrlib.infer.map import fit_map
from blrlib.infer.model import BayesModel
from tests.conftest import rounding


def _linear(likelihood: str, n: int = 60):
    return _linear_in(likelihood, n, torch.get_default_dtype())


@functools.cache  # fitted once per session and dtype (tests only read it)
def _linear_in(likelihood: str, n: int, dtype: torch.dtype):
    """A linear model (canonical link) for each likelihood, its data and MAP."""
    if likelihood == "gaussian":
        X, y = data.linear_regression(n, 3, noise=0.5, seed=0)
    else:
        X, y = data.logistic_regression(n, 3, seed=0)
    torch.manual_seed(0)  # the same initialisation, whichever test fits it first
    if likelihood == "categorical":  # three classes from the sign pattern of two features
        y = (X[:, 0] > 0).long() + (X[:, 1] > 0.5).long()
    k = 3 if likelihood == "categorical" else 1
    bm = BayesModel(nn.Linear(3, k), likelihood, prior_precision=1.0, noise_precision=4.0)
    return X, y, bm, fit_map(bm, X, y)


@functools.cache
def _mlp():
    """A 2-4-1 tanh network on 40 points of the two moons: P = 17 parameters."""
    X, y = data.two_moons(40, noise=0.1, seed=0)
    torch.manual_seed(0)  # the same initialisation, whichever test fits it first
    net = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))
    bm = BayesModel(net, "bernoulli", prior_precision=1.0)
    return X, y, bm, fit_map(bm, X, y)


def _precision(q) -> torch.Tensor:
    return -2 * q.lam[1]  # lam[1] = -S/2 for both the full and the diagonal family


def test_cov_is_inverse_hessian():
    """Logistic regression: mean = theta*, cov = (grad^2 bar-ell(theta*))^-1."""
    X, y, bm, theta = _linear("bernoulli")
    q = laplace(bm, X, y, theta)
    H = hessian(lambda t: bm.loss(t, X, y))(theta)
    # the mean is theta_map, recovered from lam = (S m, -S/2) by a Cholesky solve: rounding
    assert_close(q.mean, theta, rtol=1e-12, atol=1e-14)
    # only Cholesky inversion rounding, amplified by cond(H) < 10: 1e-10 relative is ample
    assert_close(q.cov, torch.linalg.inv(H), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("curvature", ["hessian", "ggn"])
def test_conjugate_model_is_exact(curvature, float_dtype):
    """Bayesian linear regression: Laplace is exact, S = tau Xa^T Xa + delta I."""
    X, y, bm, theta = _linear("gaussian")
    q = laplace(bm, X, y, theta, curvature=curvature)
    assert q.mean.dtype == float_dtype
    Xa = torch.cat([X, torch.ones(X.shape[0], 1)], dim=1)
    exact = 4.0 * Xa.T @ Xa + torch.eye(4)
    # the precision is computed, not fitted: rounding only (entries of size ~200, sums of 60
    # terms): 1e-12 in float64; in float32 60 eps 200 ~ 1e-3 absolute, 1e-5 relative
    tol = rounding(float_dtype, 1e-12, 1e-5)
    assert_close(_precision(q), exact, rtol=tol, atol=tol * 100)


@pytest.mark.parametrize("likelihood", ["bernoulli", "categorical", "gaussian"])
def test_ggn_equals_hessian_for_linear_model(likelihood):
    """f linear in theta and a canonical link: d^2 f / d theta^2 = 0, so the GGN is the Hessian."""
    X, y, bm, theta = _linear(likelihood)
    ggn = _precision(laplace(bm, X, y, theta, curvature="ggn"))
    H = _precision(laplace(bm, X, y, theta, curvature="hessian"))
    # two autograd routes to the same sum of N terms: rounding only
    assert_close(ggn, H, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("likelihood", ["bernoulli", "categorical", "gaussian"])
def test_output_hessian_is_autograd(likelihood):
    """Lambda_i in closed form equals the autograd Hessian of nll_i in f_i."""
    X, y, bm, theta = _linear(likelihood, n=5)
    f = bm.forward(theta, X)
    lam = output_hessian(bm, f)
    for i in range(5):
        auto = hessian(lambda fi, i=i: bm.nll_of_outputs(fi.unsqueeze(0), y[i : i + 1]).sum())(f[i])
        # closed form vs autograd of the same expression: rounding only
        assert_close(lam[i], auto, rtol=1e-12, atol=1e-14)


def test_ggn_differs_for_tanh_mlp_by_the_residual_term():
    """Nonlinear f: Hessian = GGN + sum_i (d nll_i / d f_i) d^2 f_i / d theta^2, a nonzero term."""
    X, y, bm, theta = _mlp()
    H = _precision(laplace(bm, X, y, theta, curvature="hessian"))
    ggn = _precision(laplace(bm, X, y, theta, curvature="ggn"))
    residual = (torch.sigmoid(bm.forward(theta, X)) - y).detach()  # d nll_i / d f_i

    def weighted_outputs(t: torch.Tensor) -> torch.Tensor:
        return (residual * bm.forward(t, X)).sum()

    term = hessian(weighted_outputs)(theta)
    # the dropped term is of order one relative to the Hessian: the GGN is a different matrix
    assert (term.norm() / H.norm()).item() > 0.05
    # and it is exactly what the GGN drops: rounding only
    assert_close(ggn + term, H, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("curvature", ["hessian", "ggn"])
def test_diag_is_diagonal_of_full(curvature):
    """structure='diag' keeps diag(S) of the full precision, for either curvature."""
    X, y, bm, theta = _mlp()
    full = laplace(bm, X, y, theta, curvature=curvature)
    diag = laplace(bm, X, y, theta, curvature=curvature, structure="diag")
    assert diag.diagonal and not full.diagonal
    # the same sums, in another order for the GGN einsum: rounding only
    assert_close(_precision(diag), torch.diagonal(_precision(full)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("structure", ["full", "diag"])
def test_laplace_is_fixed_point_of_blr_newton_step(structure):
    """Sec 1.3.2: at rho = 1, with the delta method, the BLR step maps Laplace to itself."""
    X, y, bm, theta = _mlp()
    q = laplace(bm, X, y, theta, structure=structure)
    lam = blr.step(q.family, q.lam, bm.sum_loss(X, y), rho=1.0, estimator="delta")
    # the step changes lam[0] = S m by the gradient at theta_map (~1e-10 after L-BFGS) and
    # lam[1] = -S/2 by nothing but rounding: 1e-8 is the requirement and holds with margin
    for new, old in zip(lam, q.lam, strict=True):
        assert_close(new, old, rtol=0, atol=1e-8)


def test_not_a_minimum_raises():
    """f = w2 w1 x at theta = 0 is a saddle of the loss when |tau sum_i x_i y_i| > delta."""
    X = torch.linspace(-1, 1, 20).unsqueeze(1)
    y = 2 * X.squeeze(1)
    net = nn.Sequential(nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False))
    bm = BayesModel(net, "gaussian", prior_precision=0.1)
    with pytest.raises(ValueError, match="theta_map"):
        laplace(bm, X, y, torch.zeros(2))
    # the GGN is positive definite at any theta
    q = laplace(bm, X, y, torch.zeros(2), curvature="ggn")
    assert (torch.linalg.eigvalsh(_precision(q)) > 0).all()


@pytest.mark.parametrize(
    ("theta", "kwargs", "error", "match"),
    [
        (torch.zeros(3), {}, ValueError, "theta_map"),
        (torch.zeros(4, 1), {}, ValueError, "theta_map"),
        ([0.0] * 4, {}, TypeError, "theta_map"),
        (torch.full((4,), float("inf")), {}, ValueError, "theta_map"),
        (torch.zeros(4), {"structure": "kron"}, ValueError, "structure"),
        (torch.zeros(4), {"curvature": "fisher"}, ValueError, "curvature"),
    ],
)
def test_bad_input(theta, kwargs, error, match):
    X, y = data.logistic_regression(10, 3, seed=0)
    bm = BayesModel(nn.Linear(3, 1), "bernoulli", prior_precision=1.0)
    with pytest.raises(error, match=match):
        laplace(bm, X, y, theta, **kwargs)


def test_log_evidence_is_exact_for_bayesian_linear_regression(float_dtype):
    """Laplace's evidence is exact for a linear-Gaussian model: compare with the closed form
    y ~ N(0, X X^T / delta + I / tau), computed by torch.distributions (independent code)."""
    from blrlib.infer import fit_map, log_evidence

    X, y = torch.randn(30, 3), torch.randn(30)
    bm = BayesModel(torch.nn.Linear(3, 1, bias=False), "gaussian", prior_precision=2.0,
                    noise_precision=4.0)  # fmt: skip
    q = laplace(bm, X, y, fit_map(bm, X, y))
    cov = X @ X.T / 2.0 + torch.eye(30) / 4.0
    exact = torch.distributions.MultivariateNormal(torch.zeros(30), cov).log_prob(y)
    # a MAP solved to L-BFGS's tolerance: agreement to rounding, 1e-8 nats in float64; in
    # float32 the log joint (about -40 nats, sums of 30 terms) rounds at about 1e-4 nats
    atol = rounding(float_dtype, 1e-8, 1e-3)
    torch.testing.assert_close(log_evidence(bm, X, y, q), exact, rtol=0, atol=atol)
    with pytest.raises(TypeError, match="q must be a GaussianPosterior"):
        log_evidence(bm, X, y, (q.family, q.lam))
