"""The dropout chapter's experiments: equal grids, the exact reference, bad input."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from blrlib import experiments
from blrlib.experiments import dropout_uq, protocol

F64 = torch.float64


@pytest.mark.parametrize("scale", ["ci", "full"])
def test_every_method_gets_a_grid_of_the_same_size(scale):
    lrs = {m: [0.1, 0.2] for m in dropout_uq.METHODS}
    grid = dropout_uq.grids(protocol.as_scale(scale), 100, lrs, h0=1.0)
    sizes = {m: len(protocol.grid_points(g)) for m, g in grid.items()}
    assert len(set(sizes.values())) == 1 and set(sizes) == set(dropout_uq.METHODS)
    assert all(g["steps"] == [50, 100] for g in grid.values())


def test_exact_predictive_is_bayesian_linear_regression():
    """Against the closed form: Sigma = (tau Phi^T Phi + delta I)^-1, mean = tau Sigma Phi^T y."""
    first = dropout_uq.random_features(7, seed=0, device="cpu")
    x = torch.linspace(-3, 3, 15, dtype=F64)[:, None]
    y = torch.sin(x[:, 0]) + x[:, 0]
    xs = torch.linspace(-9, 9, 5, dtype=F64)[:, None]
    mean, var = dropout_uq.exact_predictive(first, x, y, xs, tau=50.0)

    def phi(v):
        h = torch.relu(first(v)).detach()
        return torch.cat([h, torch.ones_like(h[:, :1])], 1)

    cov = torch.linalg.inv(
        50.0 * phi(x).T @ phi(x) + dropout_uq.PRIOR_PREC * torch.eye(8, dtype=F64)
    )
    assert_close(mean, phi(xs) @ (50.0 * cov @ phi(x).T @ y), rtol=1e-8, atol=1e-10)
    assert_close(var, torch.diagonal(phi(xs) @ cov @ phi(xs).T), rtol=1e-8, atol=1e-12)


def test_random_features_are_frozen():
    layer = dropout_uq.random_features(5, seed=1, device="cpu")
    assert not any(p.requires_grad for p in layer.parameters())
    kinks = -layer.bias / layer.weight[:, 0]
    assert ((kinks > -6) & (kinks < 6)).all()


def test_approximation_rows_cover_the_grid():
    result = experiments.run("dropout_approximations", scale="ci", device="cpu")["result"]
    assert len(result["rows"]) == 3 * 8 and all(r["valid"] for r in result["rows"])
    assert {g["candidate"] for g in result["gap"]} == {"gal", "blr"}


def test_one_run_serves_every_checkpoint():
    """The steps axis of a grid reuses one run; each checkpoint's snapshot is restored for
    prediction after the run has gone on."""
    nets = []

    def make_net(p_drop):
        torch.manual_seed(0)
        nets.append(torch.nn.Sequential(torch.nn.Linear(1, 4), torch.nn.ReLU(),
                                        torch.nn.Linear(4, 1)).double())  # fmt: skip
        return nets[-1]

    x = torch.linspace(-1, 1, 8, dtype=F64)[:, None]
    runs = dropout_uq._Runs(make_net, x, x[:, 0] ** 2, likelihood="gaussian", tau=10.0,
                            seed=0, checkpoints=[3, 6])  # fmt: skip
    objective = runs.objective("blr_dropout_adam", lambda predict: float(predict(x, 2)[0][0]))

    def weights():
        return [p.detach().clone() for p in nets[-1].parameters()]

    _, early = objective({"lr": 0.1, "p_drop": 0.1, "steps": 3})
    at_3 = weights()
    objective({"lr": 0.1, "p_drop": 0.1, "steps": 6})
    at_6 = weights()
    assert len(nets) == 1
    assert not all(torch.equal(a, b) for a, b in zip(at_3, at_6, strict=True))
    early(x, 2)
    assert all(torch.equal(a, b) for a, b in zip(weights(), at_3, strict=True))


def test_paired_bounds():
    runs = {"a": [{"v": 1.0}, {"v": 3.0}], "b": [{"v": 0.0}, {"v": 0.0}]}
    d = protocol.paired_difference([1.0, 3.0], [0.0, 0.0])
    low, high = dropout_uq.paired(runs, "v", "a", "b")
    assert_close((low, high), (d["mean"] - 2 * d["se"], d["mean"] + 2 * d["se"]))
    assert dropout_uq.paired({"a": [{"v": -0.5}]}, "v", "a") == (-0.5, -0.5)
