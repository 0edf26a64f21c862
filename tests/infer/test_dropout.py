"""MC dropout: exact at p = 0, the average over dropout masks as T grows, and modes restored."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from blrlib.infer.dropout import dropout_noise_precision, mc_dropout_predict

TAU = 4.0


def _modes(model: nn.Module) -> dict[str, bool]:
    return {name: module.training for name, module in model.named_modules()}


def test_no_dropout_gives_deterministic_mean_and_noise_variance():
    """Dropout(p=0): every pass is the eval-mode output, so mean = f and var = 1 / tau exactly."""
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Dropout(0.0), nn.Linear(8, 1))
    X = torch.randn(20, 3)
    with torch.no_grad():
        expected = net.eval()(X).squeeze(1)
    mean, var = mc_dropout_predict(net, X, likelihood="gaussian", n_samples=50, noise_precision=TAU)
    # Welford's update leaves the mean untouched and adds exact zeros when all passes agree
    assert_close(mean, expected, rtol=0, atol=0)
    assert_close(var, torch.full_like(expected, 1 / TAU), rtol=0, atol=0)
    assert not mean.requires_grad

    mean, var = mc_dropout_predict(net, X, likelihood="bernoulli", n_samples=10)
    assert_close(mean, torch.sigmoid(expected), rtol=0, atol=0)
    assert_close(var, torch.zeros_like(expected), rtol=0, atol=0)


def _exact_mask_moments(net: nn.Module, X: torch.Tensor, keep: float, likelihood: str):
    """Mean, variance and 4th central moment of g(f(x; z)) over all 2^D input masks z."""
    D = X.shape[1]
    values, probs = [], []
    net.eval()
    with torch.no_grad():
        for bits in itertools.product([0.0, 1.0], repeat=D):
            z = torch.tensor(bits)
            f = net(X * z / keep)  # inverted dropout: kept inputs are scaled by 1 / keep
            if likelihood == "categorical":
                g = torch.softmax(f, -1)
            else:
                g = f.squeeze(1)
                g = torch.sigmoid(g) if likelihood == "bernoulli" else g
            values.append(g)
            probs.append(keep ** z.sum() * (1 - keep) ** (D - z.sum()))
    values = torch.stack(values)
    probs = torch.stack(probs).reshape(-1, *[1] * (values.dim() - 1))
    assert_close(probs.sum(), torch.tensor(1.0))
    mean = (probs * values).sum(0)
    var = (probs * (values - mean) ** 2).sum(0)
    m4 = (probs * (values - mean) ** 4).sum(0)
    return mean, var, m4


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli", "categorical"])
def test_mc_moments_converge_to_the_average_over_masks(likelihood):
    """Dropout on 3 inputs: T passes estimate the mask average E_z[g], and its variance.

    Each entry of the MC mean has standard error sqrt(Var_z[g] / T) and the 1/T variance
    estimator about sqrt((mu_4 - Var^2) / T) (plus a bias -Var / T); 5 standard errors over
    at most 24 entries make a spurious failure unlikely (< 1e-5).
    """
    keep, T = 0.7, 2000
    k = 3 if likelihood == "categorical" else 1
    net = nn.Sequential(nn.Dropout(1 - keep), nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, k))
    X = torch.randn(8, 3)
    exact_mean, exact_var, m4 = _exact_mask_moments(net, X, keep, likelihood)
    tau = TAU if likelihood == "gaussian" else None
    net.train()
    mean, var = mc_dropout_predict(net, X, likelihood=likelihood, n_samples=T, noise_precision=tau)
    noise_var = 1 / TAU if likelihood == "gaussian" else 0.0
    assert mean.shape == exact_mean.shape
    se_mean = (exact_var / T).sqrt()
    assert ((mean - exact_mean).abs() <= 5 * se_mean + 1e-12).all()
    se_var = ((m4 - exact_var**2) / T).sqrt() + exact_var / T
    assert ((var - noise_var - exact_var).abs() <= 5 * se_var + 1e-12).all()
    # the mean is not the deterministic (weight-scaled) output: the test can tell them apart
    with torch.no_grad():
        f = net.eval()(X)
    deterministic = torch.softmax(f, -1) if likelihood == "categorical" else f.squeeze(1)
    if likelihood == "bernoulli":
        deterministic = torch.sigmoid(deterministic)
    assert ((deterministic - exact_mean).abs() > 5 * se_mean).any()
    if likelihood == "categorical":
        assert_close(mean.sum(-1), torch.ones(8))  # a mean of probability vectors


class _Probe(nn.Module):
    """Records the modes of the BatchNorm and Dropout it sits beside, and can raise."""

    def __init__(self, model: nn.Sequential, fail_at: int | None = None) -> None:
        super().__init__()
        self.model = [model]  # a list, so that it is not a submodule (no cycle)
        self.fail_at = fail_at
        self.calls = 0
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        seq = self.model[0]
        self.seen.append((seq[1].training, seq[3].training))
        if self.fail_at is not None and self.calls == self.fail_at:
            raise RuntimeError("probe failure")
        return x


def _net_with_probe(fail_at: int | None = None) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Dropout(0.5))
    net.append(_Probe(net, fail_at))
    net.append(nn.Linear(4, 1))
    return net


@pytest.mark.parametrize("initial", ["train", "eval", "mixed"])
def test_only_dropout_runs_in_train_mode_and_modes_are_restored(initial):
    """During the passes: BatchNorm in eval, Dropout in train; afterwards: every mode as before."""
    net = _net_with_probe()
    if initial == "eval":
        net.eval()
    elif initial == "mixed":
        net.eval()
        net[1].train()
        net[5].train()
    before = _modes(net)
    stats = (net[1].running_mean.clone(), net[1].num_batches_tracked.clone())
    X = torch.randn(10, 3)
    mc_dropout_predict(net, X, likelihood="gaussian", n_samples=5, noise_precision=TAU)
    assert net[4].seen == [(False, True)] * 5
    assert _modes(net) == before
    # BatchNorm ran on its running statistics and did not update them
    assert_close(net[1].running_mean, stats[0], rtol=0, atol=0)
    assert_close(net[1].num_batches_tracked, stats[1], rtol=0, atol=0)


def test_modes_are_restored_when_the_forward_raises():
    net = _net_with_probe(fail_at=3)
    net.eval()
    net[1].train()
    before = _modes(net)
    with pytest.raises(RuntimeError, match="probe failure"):
        mc_dropout_predict(net, torch.randn(10, 3), likelihood="bernoulli", n_samples=5)
    assert net[4].calls == 3
    assert _modes(net) == before


def test_multi_output_regression_keeps_its_shape():
    net = nn.Sequential(nn.Linear(3, 5), nn.Dropout(0.2), nn.Linear(5, 2))
    X = torch.randn(7, 3)
    mean, var = mc_dropout_predict(net, X, likelihood="gaussian", n_samples=20, noise_precision=TAU)
    assert mean.shape == var.shape == (7, 2)
    assert (var >= 1 / TAU).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"model": "net"}, TypeError, "model"),
        ({"model": nn.Linear(3, 1)}, ValueError, "model"),
        ({"likelihood": "poisson"}, ValueError, "likelihood"),
        ({"n_samples": 0}, ValueError, "n_samples"),
        ({"n_samples": 2.0}, TypeError, "n_samples"),
        ({"noise_precision": None}, ValueError, "noise_precision"),
        ({"noise_precision": 0.0}, ValueError, "noise_precision"),
        ({"noise_precision": -1.0}, ValueError, "noise_precision"),
        ({"noise_precision": float("nan")}, ValueError, "noise_precision"),
        ({"likelihood": "bernoulli", "noise_precision": 1.0}, ValueError, "noise_precision"),
    ],
)
def test_mc_dropout_rejects_bad_input(kwargs, error, name):
    net = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 1))
    args = {"model": net, "likelihood": "gaussian", "n_samples": 3, "noise_precision": TAU}
    args.update(kwargs)
    model = args.pop("model")
    before = _modes(model) if isinstance(model, nn.Module) else None
    with pytest.raises(error, match=name):
        mc_dropout_predict(model, torch.randn(5, 3), **args)
    if before is not None:
        assert _modes(model) == before


def test_noise_precision_from_weight_decay():
    """tau = keep_prob l^2 / (2 N lambda), Gal & Ghahramani (2016, Sec 4)."""
    tau = dropout_noise_precision(length_scale=1.0, keep_prob=0.9, n_data=500, weight_decay=1e-4)
    assert math.isclose(tau, 9.0, rel_tol=1e-12)
    # and back: the weight decay that this tau implies is the one we started from
    lam = 0.9 * 2.0**2 / (2 * 500 * tau)
    tau2 = dropout_noise_precision(length_scale=2.0, keep_prob=0.9, n_data=500, weight_decay=lam)
    assert math.isclose(tau2, tau, rel_tol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"length_scale": 0.0}, ValueError, "length_scale"),
        ({"length_scale": "1"}, TypeError, "length_scale"),
        ({"keep_prob": 0.0}, ValueError, "keep_prob"),
        ({"keep_prob": 1.5}, ValueError, "keep_prob"),
        ({"n_data": 0}, ValueError, "n_data"),
        ({"n_data": 10.0}, TypeError, "n_data"),
        ({"weight_decay": -1e-4}, ValueError, "weight_decay"),
        ({"weight_decay": float("inf")}, ValueError, "weight_decay"),
    ],
)
def test_noise_precision_rejects_bad_input(kwargs, error, name):
    args = {"length_scale": 1.0, "keep_prob": 0.5, "n_data": 10, "weight_decay": 1e-3}
    with pytest.raises(error, match=name):
        dropout_noise_precision(**{**args, **kwargs})


def test_fit_dropout_minimises_the_map_loss_with_masks():
    """With dropout switched off (p = 0) training reaches the MAP of the same BayesModel."""
    from blrlib import data
    from blrlib.infer import BayesModel
    from blrlib.infer.dropout import fit_dropout
    from blrlib.infer.map import fit_map

    X, y = data.logistic_regression(80, 2, seed=3)
    net = nn.Sequential(nn.Linear(2, 1), nn.Dropout(0.0))
    trace = fit_dropout(
        net, X, y, likelihood="bernoulli", prior_precision=1.0, n_steps=3000, lr=5e-2
    )
    assert trace[-1] < trace[0] and not net.training
    bm = BayesModel(net, "bernoulli", prior_precision=1.0)
    # Adam at a constant rate 5e-2 ends within ~1e-3 of the optimum of this convex problem
    torch.testing.assert_close(bm.theta0(), fit_map(bm, X, y), rtol=0, atol=5e-3)
    with pytest.raises(ValueError, match="model"):
        fit_dropout(nn.Linear(2, 1), X, y, likelihood="bernoulli", prior_precision=1.0)
