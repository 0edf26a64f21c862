"""BayesModel: the flat-vector view of a torch model, its losses, and its input checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from blrlib import data
from blrlib.infer import BayesModel, GaussianPosterior


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))


def test_flat_vector_round_trip_and_forward():
    net = _mlp()
    bm = BayesModel(net, "bernoulli", prior_precision=2.0)
    X, _ = data.two_moons(20)
    theta = bm.theta0()
    assert bm.dim == 2 * 4 + 4 + 4 + 1
    assert_close(bm.forward(theta, X), net(X).squeeze(1), rtol=0, atol=0)
    bm.load(theta + 1.0)
    assert_close(bm.theta0(), theta + 1.0, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("likelihood", "reference"),
    [
        ("bernoulli", lambda f, y: -torch.distributions.Bernoulli(logits=f).log_prob(y)),
        ("gaussian", lambda f, y: -torch.distributions.Normal(f, 1 / math.sqrt(4.0)).log_prob(y)),
    ],
)
def test_nll_is_the_negative_log_likelihood(likelihood, reference):
    """Each per-example term equals -log p(y | f) from torch.distributions (constants included)."""
    bm = BayesModel(_mlp(), likelihood, prior_precision=1.0, noise_precision=4.0)
    X, y = data.two_moons(30)
    theta = bm.theta0()
    assert_close(bm.nll(theta, X, y), reference(bm.forward(theta, X), y), rtol=1e-12, atol=1e-12)


def test_categorical_nll_and_log_joint():
    bm = BayesModel(nn.Linear(2, 3), "categorical", prior_precision=0.5)
    X, y = data.two_moons(30)
    theta = bm.theta0()
    logits = bm.forward(theta, X)
    expected = -torch.distributions.Categorical(logits=logits).log_prob(y.long())
    assert_close(bm.nll(theta, X, y), expected, rtol=1e-12, atol=1e-12)
    prior = torch.distributions.Normal(0.0, 1 / math.sqrt(0.5)).log_prob(theta).sum()
    assert_close(bm.log_joint(theta, X, y), -expected.sum() + prior, rtol=1e-12, atol=1e-12)


def test_last_layer_parameters_only():
    net = _mlp()
    bm = BayesModel(net, "bernoulli", prior_precision=1.0, parameters=["2.weight", "2.bias"])
    X, _ = data.two_moons(10)
    assert bm.dim == 5
    theta = torch.zeros(5)
    assert_close(bm.forward(theta, X), torch.zeros(10), rtol=0, atol=0)  # last layer zeroed
    assert_close(bm.sum_loss(X, torch.ones(10))(theta), bm.loss(theta, X, torch.ones(10)))


def test_vmap_over_thetas():
    bm = BayesModel(_mlp(), "bernoulli", prior_precision=1.0)
    X, y = data.two_moons(10)
    thetas = torch.randn(3, bm.dim)
    batched = torch.vmap(lambda t: bm.loss(t, X, y))(thetas)
    assert_close(batched, torch.stack([bm.loss(t, X, y) for t in thetas]))


def test_gaussian_posterior_layouts():
    full = GaussianPosterior.from_mean_precision(
        torch.zeros(2), torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    )
    diag = GaussianPosterior.from_mean_precision(torch.zeros(2), torch.tensor([2.0, 1.0]))
    assert not full.diagonal and diag.diagonal
    assert_close(full.cov, torch.linalg.inv(torch.tensor([[2.0, 0.5], [0.5, 1.0]])))
    assert_close(diag.cov, torch.tensor([0.5, 1.0]))
    assert full.sample(5).shape == (5, 2)
    with pytest.raises(TypeError, match="other"):
        full.kl(diag)


def test_bad_input():
    with pytest.raises(TypeError, match="model"):
        BayesModel(lambda x: x, "bernoulli", prior_precision=1.0)
    with pytest.raises(ValueError, match="model"):
        BayesModel(nn.Identity(), "bernoulli", prior_precision=1.0)
    with pytest.raises(ValueError, match="likelihood"):
        BayesModel(_mlp(), "poisson", prior_precision=1.0)
    for bad in [0.0, -1.0, math.nan, math.inf]:
        with pytest.raises(ValueError, match="prior_precision"):
            BayesModel(_mlp(), "bernoulli", prior_precision=bad)
        with pytest.raises(ValueError, match="noise_precision"):
            BayesModel(_mlp(), "gaussian", prior_precision=1.0, noise_precision=bad)
    with pytest.raises(ValueError, match="parameters"):
        BayesModel(_mlp(), "bernoulli", prior_precision=1.0, parameters=["nope"])
    bm = BayesModel(_mlp(), "bernoulli", prior_precision=1.0)
    X, y = data.two_moons(10)
    with pytest.raises(ValueError, match="theta"):
        bm.loss(torch.zeros(3), X, y)
    with pytest.raises(ValueError, match="y"):
        bm.loss(bm.theta0(), X, y[:5])
