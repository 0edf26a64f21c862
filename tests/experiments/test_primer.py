"""The primer's experiments: the tabular comparison at ci scale and the pieces it rests on."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from blrlib import data, experiments, infer
from blrlib.experiments import primer_nets
from blrlib.experiments.primer import _log_joint
from blrlib.infer import mcmc

F64 = torch.float64


@pytest.fixture(scope="module")
def tabular() -> dict:
    return experiments.run("primer_tabular", scale="ci", device="cpu")["result"]


def test_primer_tabular_ci_scores_are_sane(tabular):
    """One seed at ci scale: every tuned method beats chance on breast cancer (63% majority
    class) by a wide margin, and predicts the diabetes targets (standardised with the training
    split's statistics) better than their training mean, whose test RMSE is about 1."""
    assert tabular["seeds"] == [0]
    for scores in tabular["breast_cancer"]["runs"][0].values():
        assert scores["accuracy"] > 0.9
    for scores in tabular["diabetes"]["runs"][0].values():
        assert scores["rmse"] < 0.95


def test_primer_tabular_tunes_every_method_alike(tabular):
    """Each method tried three settings of its declared grid and kept the best on validation."""
    for name in ("breast_cancer", "diabetes"):
        for method, report in tabular[name]["tuning"][0].items():
            key = "p_drop" if method == "mc_dropout" else "prior_precision"
            tried = [row["setting"][key] for row in report["grid"]]
            assert tried == primer_nets.GRIDS["tabular"][key]
            scores = [row["score"] for row in report["grid"]]
            assert report["score"] == min(scores)
        summary = tabular[name]["summary"]
        assert set(summary) == set(primer_nets.METHODS)
        assert summary["map"]["nll"]["n"] == 1
    table = primer_nets.tabular_table(tabular)
    assert all(method in table for method in primer_nets.METHODS)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_newton_last_layer_reaches_the_minimum(likelihood):
    """After the Newton steps the last layer's gradient of bar-ell vanishes (to 1e-8 on a loss
    of order 100, far below the 1e-2 at which L-BFGS stalls on such problems)."""
    X, y = data.two_moons(60, noise=0.2, seed=1, dtype=F64)
    if likelihood == "gaussian":
        y = X[:, 0] + 0.1 * torch.randn(60, dtype=F64)
    setup = primer_nets.Setup(likelihood, [2, 8, 1], nn.ReLU, 100.0, 1, 0, torch.device("cpu"))
    net = primer_nets._mlp(setup, 0.0)
    primer_nets._newton_last_layer(setup, net, X, y, 0.1)
    last = primer_nets._model(setup, net, 0.1, last=True)
    theta = last.theta0().requires_grad_(True)
    (grad,) = torch.autograd.grad(last.loss(theta, X, y), theta)
    assert_close(grad, torch.zeros_like(grad), rtol=0, atol=1e-8)


def test_primer_logreg2d_rejects_too_few_points():
    with pytest.raises(ValueError, match="n_train"):
        experiments.primer.primer_logreg2d(scale="ci", device=torch.device("cpu"), n_train=1)


def test_hmc_target_is_the_models_log_joint():
    """The written-out log joint HMC samples differs from BayesModel.log_joint by a constant:
    the prior's normaliser (P / 2) log(delta / 2 pi), here with delta = 2 and P = 2."""
    X, y = data.logistic_regression(30, 2, seed=3, dtype=F64)
    bm = infer.BayesModel(nn.Linear(2, 1, bias=False, dtype=F64), "bernoulli", prior_precision=2.0)
    thetas = 3 * torch.randn(7, 2, dtype=F64)
    diff = mcmc.log_prob_fn(bm, X, y)(thetas) - _log_joint(X, y, 2.0)(thetas)
    constant = torch.full((7,), torch.log(torch.tensor(2.0 / (2 * torch.pi), dtype=F64)).item())
    assert_close(diff, constant, rtol=0, atol=1e-10)
