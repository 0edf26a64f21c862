"""Predictives: probit vs Monte Carlo, linearised variances, point masses, the noise term."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from blrlib import data
from blrlib.infer.gaussian import GaussianPosterior
from blrlib.infer.model import BayesModel
from blrlib.infer.predictive import linearised, mc, predict, probit, probit_multiclass

# max over the grid below of |probit - E[sigmoid(f)]|, the expectation by 200-point
# Gauss-Hermite quadrature (so without Monte Carlo error) on a finer 201 x 200 grid:
# 0.0113, at mean = -5, var = 6.9 (the grid's edge). It is 0 at mean 0 and var 0.
PROBIT_MAX_ERROR = 0.0113


def _linear(likelihood: str, k: int = 1, n: int = 30):
    """A linear model with a random Gaussian q over its parameters (weights, then bias)."""
    X, y = data.logistic_regression(n, 3, seed=0)
    bm = BayesModel(nn.Linear(3, k), likelihood, prior_precision=1.0, noise_precision=4.0)
    A = torch.randn(bm.dim, bm.dim)
    q = GaussianPosterior.from_mean_precision(torch.randn(bm.dim), A @ A.T + torch.eye(bm.dim))
    return X, bm, q


def test_probit_vs_monte_carlo():
    """sigmoid(m / sqrt(1 + pi v / 8)) vs a 10^5-draw MC of E[sigmoid(f)], f ~ N(m, v)."""
    means = torch.linspace(-5, 5, 21)
    eps = torch.randn(100_000)  # the same draws for every (m, v): smooth in m and v
    worst = 0.0
    for var in torch.logspace(math.log10(0.01), math.log10(20), 10):
        reference = torch.sigmoid(means.unsqueeze(1) + var.sqrt() * eps).mean(1)
        approx = probit(means, var.expand(21))
        worst = max(worst, (approx - reference).abs().max().item())
    # the approximation's error plus 5 MC standard errors (sd(sigmoid) <= 1/2, so SE <= 0.0016)
    assert worst < PROBIT_MAX_ERROR + 5 * 0.5 / math.sqrt(100_000)
    # and it is a real approximation, not noise: the error is of the size measured
    assert worst > PROBIT_MAX_ERROR / 2


def test_probit_exact_cases():
    """var = 0 gives the plug-in sigmoid; mean = 0 gives 1/2 for any variance (symmetry)."""
    m = torch.linspace(-4, 4, 9)
    # exact formulas: rounding only
    assert_close(probit(m, torch.zeros(9)), torch.sigmoid(m), rtol=1e-15, atol=0)
    assert_close(probit(torch.zeros(3), torch.tensor([0.1, 1.0, 100.0])), torch.full((3,), 0.5))


def test_probit_multiclass():
    """Rows sum to one, var = 0 is the softmax, and a larger variance flattens the probabilities."""
    mean = torch.randn(5, 4) * 3
    p0 = probit_multiclass(mean, torch.zeros(5, 4))
    p1 = probit_multiclass(mean, torch.full((5, 4), 10.0))
    # exact formulas: rounding only
    assert_close(p0, torch.softmax(mean, -1), rtol=1e-14, atol=1e-16)
    assert_close(p1.sum(-1), torch.ones(5), rtol=1e-14, atol=0)
    assert (p1.max(-1).values < p0.max(-1).values).all()


def test_mc_averages_probabilities_not_logits():
    """Two draws with logits 0 and 4: (sigmoid(0) + sigmoid(4)) / 2, not sigmoid(2)."""
    bm = BayesModel(nn.Linear(1, 1, bias=False), "bernoulli", prior_precision=1.0)
    p = mc(bm, torch.ones(1, 1), torch.tensor([[0.0], [4.0]]))
    # an exact average of two numbers: rounding only
    assert_close(p, (torch.sigmoid(torch.tensor([0.0])) + torch.sigmoid(torch.tensor([4.0]))) / 2)


@pytest.mark.parametrize(
    ("likelihood", "k"), [("bernoulli", 1), ("categorical", 3), ("gaussian", 1)]
)
def test_mc_of_point_mass_is_plug_in(likelihood, k):
    """All draws equal to theta: the MC predictive is the prediction at theta (variance 1/tau)."""
    X, bm, q = _linear(likelihood, k)
    theta = q.mean
    out = mc(bm, X, theta.expand(50, bm.dim))
    f = bm.forward(theta, X)
    # a mean of 50 equal numbers: rounding only
    if likelihood == "bernoulli":
        assert_close(out, torch.sigmoid(f), rtol=1e-14, atol=1e-15)
    elif likelihood == "categorical":
        assert_close(out, torch.softmax(f, -1), rtol=1e-14, atol=1e-15)
    else:
        assert_close(out[0], f, rtol=1e-14, atol=1e-15)
        assert_close(out[1], torch.full_like(f, 1 / 4.0), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("diagonal", [False, True])
def test_linearised_variance_is_x_sigma_x(diagonal):
    """Linear model: f = theta^T x_a (x_a = (x, 1)), so the variance of f is x_a^T Sigma x_a."""
    X, bm, q = _linear("bernoulli")
    if diagonal:
        q = GaussianPosterior.from_mean_precision(q.mean, torch.rand(bm.dim) + 0.5)
    cov = torch.diag(q.cov) if diagonal else q.cov
    Xa = torch.cat([X, torch.ones(X.shape[0], 1)], dim=1)
    f_mean, f_var = linearised(bm, X, q)
    # closed forms of the same sums: rounding only
    assert_close(f_mean, Xa @ q.mean, rtol=1e-12, atol=1e-14)
    assert_close(f_var, torch.einsum("np,pq,nq->n", Xa, cov, Xa), rtol=1e-12, atol=1e-14)


def test_linearised_categorical_per_class():
    """Class c's logit is theta_c^T x_a: its variance is the (c, c) block of Sigma, sandwiched."""
    X, bm, q = _linear("categorical", k=3)
    _, f_var = linearised(bm, X, q)
    Xa = torch.cat([X, torch.ones(X.shape[0], 1)], dim=1)
    idx = torch.arange(12).reshape(3, 4)  # weight (3, 3) row c, then bias c: entries 3c..3c+2, 9+c
    for c in range(3):
        p = torch.cat([idx.flatten()[3 * c : 3 * c + 3], torch.tensor([9 + c])])
        block = q.cov[p][:, p]
        # closed form of the same sum: rounding only
        assert_close(
            f_var[:, c], torch.einsum("np,pq,nq->n", Xa, block, Xa), rtol=1e-12, atol=1e-14
        )


@pytest.mark.parametrize(
    ("likelihood", "k"), [("bernoulli", 1), ("categorical", 3), ("gaussian", 1)]
)
def test_linearised_mc_is_mc_for_linear_model(likelihood, k):
    """f linear in theta: the linearised draws are the exact ones (same generator seed)."""
    X, bm, q = _linear(likelihood, k)
    a = predict(bm, X, q, method="mc", n_samples=200, generator=torch.Generator().manual_seed(1))
    b = predict(
        bm, X, q, method="linearised_mc", n_samples=200, generator=torch.Generator().manual_seed(1)
    )
    # the same draws, f computed as X theta or as X m + X (theta - m): rounding only
    assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_gaussian_predictive_includes_noise():
    """Gaussian likelihood: the predictive variance is x_a^T Sigma x_a + 1/tau (probit, MC)."""
    X, bm, q = _linear("gaussian")
    Xa = torch.cat([X, torch.ones(X.shape[0], 1)], dim=1)
    var = torch.einsum("np,pq,nq->n", Xa, q.cov, Xa) + 1 / 4.0
    mean_p, var_p = predict(bm, X, q, method="probit")
    # closed forms of the same sums: rounding only
    assert_close(mean_p, Xa @ q.mean, rtol=1e-12, atol=1e-14)
    assert_close(var_p, var, rtol=1e-12, atol=1e-14)
    _, var_mc = predict(bm, X, q, method="mc", n_samples=20_000)
    # a sample variance of Gaussian draws has relative SE sqrt(2 / S) = 0.01 on the f part;
    # 0.05 is 5 SE (the 1/tau part is exact, which only helps)
    assert_close(var_mc, var, rtol=0.05, atol=0)


def test_probit_method_close_to_mc_for_bernoulli():
    """Linear logistic model: predict(method='probit') is within the probit's error of MC."""
    X, bm, q = _linear("bernoulli")
    p_probit = predict(bm, X, q, method="probit")
    p_mc = predict(bm, X, q, method="mc", n_samples=20_000)
    # linearisation is exact here, so only the probit error (0.0113, measured above) and the
    # MC error (5 SE = 5 * 0.5 / sqrt(20000) = 0.018) separate them
    assert_close(p_probit, p_mc, rtol=0, atol=PROBIT_MAX_ERROR + 0.018)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_samples": 0}, ValueError, "n_samples"),
        ({"n_samples": -3}, ValueError, "n_samples"),
        ({"n_samples": 2.5}, TypeError, "n_samples"),
        ({"n_samples": True}, TypeError, "n_samples"),
        ({"method": "laplace"}, ValueError, "method"),
    ],
)
def test_predict_bad_input(kwargs, error, match):
    X, bm, q = _linear("bernoulli")
    with pytest.raises(error, match=match):
        predict(bm, X, q, **kwargs)


def test_bad_shapes():
    X, bm, q = _linear("bernoulli")
    other = GaussianPosterior.from_mean_precision(torch.zeros(3), torch.eye(3))
    with pytest.raises(ValueError, match="q"):
        predict(bm, X, other)
    with pytest.raises(ValueError, match="q"):
        linearised(bm, X, other)
    with pytest.raises(TypeError, match="q"):
        predict(bm, X, (torch.zeros(4), torch.eye(4)))
    with pytest.raises(ValueError, match="thetas"):
        mc(bm, X, torch.zeros(4))
    with pytest.raises(ValueError, match="thetas"):
        mc(bm, X, torch.zeros(10, 3))
    with pytest.raises(ValueError, match="thetas"):
        mc(bm, X, torch.zeros(0, 4))
    with pytest.raises(ValueError, match="var"):
        probit(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="var"):
        probit(torch.zeros(3), -torch.ones(3))
    with pytest.raises(ValueError, match="mean"):
        probit_multiclass(torch.zeros(3), torch.zeros(3))
    with pytest.raises(TypeError, match="mean"):
        probit([0.0], torch.zeros(1))
