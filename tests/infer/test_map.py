"""fit_map: the MAP of ridge regression in closed form, and weight decay = a Gaussian prior."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from blrlib import data
from blrlib.infer.map import fit_map
from blrlib.infer.model import BayesModel
from tests.conftest import rounding


def _logistic(n: int = 100, dim: int = 3, delta: float = 1.0):
    X, y = data.logistic_regression(n, dim, seed=0)
    net = nn.Linear(dim, 1)
    nn.init.zeros_(net.weight)
    nn.init.zeros_(net.bias)
    return X, y, BayesModel(net, "bernoulli", prior_precision=delta)


def test_ridge_closed_form(float_dtype):
    """Linear-Gaussian model: the MAP solves (tau Xa^T Xa + delta I) theta = tau Xa^T y."""
    X, y = data.linear_regression(50, 3, noise=0.5, seed=0)
    tau, delta = 4.0, 2.0
    bm = BayesModel(nn.Linear(3, 1), "gaussian", prior_precision=delta, noise_precision=tau)
    # float32 cannot reach a gradient of 1e-10: ask for 1e-4, within its rounding floor
    theta = fit_map(bm, X, y, tol=rounding(float_dtype, 1e-10, 1e-4))
    Xa = torch.cat([X, torch.ones(50, 1)], dim=1)  # parameter order: weight, then bias
    exact = torch.linalg.solve(tau * Xa.T @ Xa + delta * torch.eye(4), tau * Xa.T @ y)
    # |theta - theta*| <= |gradient| / lambda_min(H) with lambda_min >= delta = 2 and a
    # gradient below 1e-9 at L-BFGS's end: 1e-8 leaves a factor of 20. In float32 fit_map
    # stops at rounding, a gradient of about sqrt(eps) |bar-ell| ~ 1e-2 at worst: 1e-2 / 2.
    assert theta.dtype == float_dtype
    assert_close(theta, exact, rtol=0, atol=rounding(float_dtype, 1e-8, 5e-3))


def test_weight_decay_is_gaussian_prior():
    """SGD on the mean nll with weight_decay = delta / N reaches fit_map's minimum of bm.loss."""
    n, delta = 100, 1.0
    X, y, bm = _logistic(n=n, delta=delta)
    theta_map = fit_map(bm, X, y)
    # L bounds the mean loss's Hessian everywhere (p(1-p) <= 1/4), so lr = 1/L descends;
    # near the minimum each step contracts the error by 1 - mu/L with mu = 0.069 the smallest
    # Hessian eigenvalue there and L = 0.34: 0.8, so 150 steps reduce it by 1e-14.
    Xa = torch.cat([X, torch.ones(n, 1)], dim=1)
    L = torch.linalg.eigvalsh(Xa.T @ Xa / n).max().item() / 4 + delta / n
    opt = torch.optim.SGD(bm.model.parameters(), lr=1.0 / L, weight_decay=delta / n)
    for _ in range(150):
        opt.zero_grad()
        nll = bm.nll_of_outputs(bm.model(X).squeeze(1), y).mean()  # no prior term
        nll.backward()
        opt.step()
    # both are converged to rounding (fit_map's gradient ~1e-10, SGD's error ~1e-15), so 1e-6,
    # the requirement, is loose by orders of magnitude
    assert_close(bm.theta0(), theta_map, rtol=0, atol=1e-6)


def test_module_left_unchanged_and_theta0_used():
    """fit_map reads theta0 (not the module) when given, and never writes into the module."""
    X, y, bm = _logistic()
    before = bm.theta0()
    theta_a = fit_map(bm, X, y)
    theta_b = fit_map(bm, X, y, theta0=torch.full((4,), 0.5))
    # exact: the module's parameters are never written
    assert_close(bm.theta0(), before, rtol=0, atol=0)
    # the minimum is unique (strictly convex loss): both starts give it, up to the gradient
    # at the end (< 1e-9) over the smallest Hessian eigenvalue (6.9)
    assert_close(theta_a, theta_b, rtol=0, atol=1e-8)


def test_not_converged_raises():
    """One L-BFGS iteration from zero leaves a large gradient: RuntimeError naming max_iter."""
    X, y, bm = _logistic()
    with pytest.raises(RuntimeError, match="max_iter"):
        fit_map(bm, X, y, max_iter=1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"theta0": torch.zeros(3)}, ValueError, "theta0"),
        ({"theta0": torch.tensor([0.0, math.nan, 0.0, 0.0])}, ValueError, "theta0"),
        ({"theta0": [0.0, 0.0, 0.0, 0.0]}, TypeError, "theta0"),
        ({"max_iter": 0}, ValueError, "max_iter"),
        ({"max_iter": 2.5}, TypeError, "max_iter"),
        ({"tol": -1.0}, ValueError, "tol"),
        ({"tol": "small"}, TypeError, "tol"),
    ],
)
def test_bad_input(kwargs, error, match):
    X, y, bm = _logistic()
    with pytest.raises(error, match=match):
        fit_map(bm, X, y, **kwargs)
