"""The MNIST experiments (optim_mnist, binary_mnist): the split, and one ci run of each.

A ci run costs about 5 s of CPU (the 5,000 digits are parsed once per process, about 1 s);
each experiment runs once per module and every test reads that run.
"""

from __future__ import annotations

import pytest
import torch

from blrlib import experiments
from blrlib.experiments import binary_mnist, optim_mnist, protocol

CPU = torch.device("cpu")
METRICS = {"accuracy", "nll", "ece", "auroc_rotated", "auroc_permuted"}


@pytest.fixture(scope="module")
def optim_ci() -> dict:
    return experiments.run("optim_mnist", scale="ci", device="cpu")["result"]


@pytest.fixture(scope="module")
def binary_ci() -> dict:
    return experiments.run("binary_mnist", scale="ci", device="cpu")["result"]


def test_mnist_splits_follow_the_protocol():
    """Stratified test (1/5) and validation (1/5 of the rest) parts of the 5,000 digits, each
    class in every part, standardised by the training part alone; OOD sets as large as test."""
    parts = optim_mnist.mnist_splits(0)
    sizes = {k: len(parts[k][0]) for k in ("train", "val", "test")}
    assert sizes == {"train": 3200, "val": 800, "test": 1000}
    for k in ("train", "val", "test"):
        assert torch.bincount(parts[k][1]).tolist() == [sizes[k] // 10] * 10
    assert parts["train"][0].mean(0).abs().max() < 1e-4  # float32 centring
    assert parts["test"][0].mean(0).abs().max() > 1e-2  # ... by the training part only
    for k in optim_mnist.OOD_SETS:
        assert parts[k][0].shape == (1000, 784) and parts[k][1] is None


def test_rotated_and_permuted_are_made_from_the_test_digits():
    """Undoing the standardisation (its mean and sd are the training part's) and the 90
    degree turn gives back the raw test images; the permuted set holds each test image's
    pixel values, moved. float32 arithmetic: 1e-5 on pixels in [0, 1]."""
    parts = optim_mnist.mnist_splits(3)
    raw_train = _raw(parts["train"][1], 3)
    mean, std = raw_train.mean(0), raw_train.std(0) + 0.1
    test, rotated, permuted = (parts[k][0] * std + mean for k in ("test", "rotated", "permuted"))
    back = rotated.view(-1, 28, 28).rot90(-1, (1, 2)).reshape(-1, 784)
    torch.testing.assert_close(back, test, rtol=0, atol=1e-5)
    torch.testing.assert_close(permuted.sort(1).values, test.sort(1).values, rtol=0, atol=1e-5)
    assert (permuted - test).abs().max() > 0.5


def _raw(y_train: torch.Tensor, seed: int) -> torch.Tensor:
    """The raw training images of ``mnist_splits(seed)``, from the same protocol split."""
    X, y = optim_mnist._mnist()
    train, _, _ = protocol.split(X, y, test_fraction=0.2, val_fraction=0.2, seed=seed)
    assert torch.equal(train[1], y_train)
    return train[0]


def test_optim_mnist_ci(optim_ci):
    """Keys, equal grids, the winner taken from its table; and the claim the chapter makes:
    both methods are far above chance (0.1) on the test digits, and both flag the permuted
    images better than chance (AUROC 0.5)."""
    res = optim_ci
    assert res["seeds"] == [0] and set(res["summary"]) == {"adam", "von"}
    assert METRICS <= set(res["summary"]["von"]) and METRICS <= set(res["paired"])
    assert {len(protocol.grid_points(g)) for g in optim_mnist.GRIDS.values()} == {5}
    for (table,) in res["tuned"].values():
        best = min(table["grid"], key=lambda row: row["score"])
        assert table["best"] == best["setting"] and table["score"] == best["score"]
    for row in res["summary"].values():
        assert row["accuracy"]["mean"] > 0.8 and row["auroc_permuted"]["mean"] > 0.7
    von, adam = res["per_seed"]["von"][0], res["per_seed"]["adam"][0]
    assert res["paired"]["nll"]["mean"] == pytest.approx(von["nll"] - adam["nll"])


def test_binary_mnist_ci(binary_ci):
    """Keys, the grids of binary_digits, and the claim: every binary network is far above
    chance on the test digits, and BayesBiNN's predictive matches its mode in accuracy to
    within 0.01 (q collapses to nearly a point mass at tau = 1e-10)."""
    res = binary_ci
    assert set(res["summary"]) == {"ste", "bayesbinn_mode", "bayesbinn_predictive"}
    assert METRICS <= set(res["summary"]["ste"])
    assert {k.split(":")[0] for k in res["paired"]} == {
        "bayesbinn_mode-ste", "bayesbinn_predictive-ste"
    }  # fmt: skip
    for row in res["summary"].values():
        assert row["accuracy"]["mean"] > 0.8
    mode, pred = (res["per_seed"][k][0]["accuracy"] for k in res["summary"] if "bayes" in k)
    assert abs(mode - pred) < 0.01
    assert len(res["curves"][0]["bayesbinn"]) == res["sizes"]["epochs"]
    assert binary_mnist.PUBLISHED["n_train"] == 60_000
