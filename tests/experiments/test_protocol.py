"""The evaluation protocol: splits, equal tuning budgets, seeds and summaries."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from blrlib.experiments import protocol


def _labels(counts: list[int]) -> torch.Tensor:
    return torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])


def test_split_is_a_stratified_partition():
    y = _labels([50, 30, 20])
    X = torch.arange(len(y), dtype=torch.float64).unsqueeze(1)
    (Xtr, ytr), (Xva, yva), (Xte, yte) = protocol.split(X, y, test_fraction=0.2, seed=3)
    rows = torch.cat([Xtr, Xva, Xte]).flatten().sort().values
    assert_close(rows, X.flatten())  # every row in exactly one part
    for part, share in ((yte, 0.2), (yva, 0.8 * 0.2), (ytr, 0.8 * 0.8)):
        counts = torch.bincount(part, minlength=3)
        assert_close(counts.double(), share * torch.tensor([50.0, 30, 20]), atol=1.0, rtol=0)
    for Xp, yp in ((Xtr, ytr), (Xva, yva), (Xte, yte)):  # rows keep their labels
        assert_close(y[Xp.flatten().long()], yp)


def test_split_is_seeded():
    y = _labels([40, 40])
    X = torch.randn(80, 2)
    a = protocol.train_val_split(X, y, seed=0)
    b = protocol.train_val_split(X, y, seed=0)
    c = protocol.train_val_split(X, y, seed=1)
    assert_close(a[1][0], b[1][0])
    assert not torch.equal(a[1][0], c[1][0])


def test_float_binary_targets_are_stratified_regression_targets_are_not():
    y = torch.cat([torch.zeros(90), torch.ones(10)])
    (_, ytr), (_, yva) = protocol.train_val_split(torch.zeros(100, 1), y, seed=0)
    assert int(yva.sum()) == 2  # 20% of each class
    yr = torch.linspace(0, 1, 100)
    (_, _), (_, yva) = protocol.train_val_split(torch.zeros(100, 1), yr, seed=0)
    assert len(yva) == 20


@pytest.mark.parametrize("fraction", [0.01, 0.999])
def test_split_that_empties_a_class_is_refused(fraction):
    y = _labels([50, 5])
    with pytest.raises(ValueError, match="val_fraction"):
        protocol.train_val_split(torch.zeros(55, 1), y, val_fraction=fraction, seed=0)
    with pytest.raises(ValueError, match="test_fraction"):
        protocol.split(torch.zeros(55, 1), y, test_fraction=fraction, seed=0)


def test_bad_split_arguments():
    with pytest.raises(ValueError, match="val_fraction"):
        protocol.train_val_split(torch.zeros(10, 1), torch.zeros(10), val_fraction=1.5, seed=0)
    with pytest.raises(ValueError, match="same length"):
        protocol.train_val_split(torch.zeros(10, 1), torch.zeros(9), seed=0)


def test_tune_picks_the_lowest_validation_score_and_keeps_its_payload():
    tried = []

    def objective(hp):
        tried.append(hp)
        return (hp["lr"] - 0.1) ** 2 + hp["wd"], f"model {hp}"

    tuned = protocol.tune(objective, {"lr": [0.01, 0.1, 1.0], "wd": [0.0, 1.0]})
    assert len(tried) == 6
    assert tuned.best == {"lr": 0.1, "wd": 0.0}
    assert tuned.payload == "model {'lr': 0.1, 'wd': 0.0}"
    assert len(tuned.as_dict()["grid"]) == 6


def test_tune_treats_a_diverged_run_as_worst():
    tuned = protocol.tune(lambda hp: math.nan if hp["lr"] > 1 else hp["lr"], {"lr": [10, 0.5]})
    assert tuned.best == {"lr": 0.5}
    with pytest.raises(ValueError, match="non-finite"):
        protocol.tune(lambda hp: math.inf, {"lr": [1, 2]})


def test_tune_all_refuses_unequal_budgets():
    f = lambda hp: 0.0  # noqa: E731
    out = protocol.tune_all({"a": (f, {"lr": [1, 2, 3]}), "b": (f, [{"x": 1}, {"x": 2}, {"x": 3}])})
    assert set(out) == {"a", "b"}
    with pytest.raises(ValueError, match="same size"):
        protocol.tune_all({"a": (f, {"lr": [1, 2, 3]}), "b": (f, {"lr": [1, 2]})})


@pytest.mark.parametrize("grid", [{}, {"lr": []}, [], {"lr": "abc"}, 3])
def test_bad_grids(grid):
    with pytest.raises((ValueError, TypeError), match="grid"):
        protocol.grid_points(grid)


def test_seeds_per_scale():
    assert protocol.seeds("ci") == [0]
    assert protocol.seeds("full", base=10) == [10, 11, 12, 13, 14]
    assert protocol.seeds("gpu", ci=2, full=6) == list(range(6))
    assert protocol.seeds("ci", n_seeds=3) == [0, 1, 2]
    with pytest.raises(ValueError, match="n_seeds"):
        protocol.seeds("ci", n_seeds=0)
    with pytest.raises(ValueError, match="full"):
        protocol.seeds("full", full=3)
    with pytest.raises(ValueError, match="scale"):
        protocol.seeds("huge")


def test_by_scale():
    assert protocol.by_scale("ci", ci=1, full=2) == 1
    assert protocol.by_scale("gpu", ci=1, full=2) == 2
    assert protocol.by_scale("gpu", ci=1, full=2, gpu=3) == 3


def test_summaries():
    s = protocol.summarise([1.0, 2.0, 3.0])
    assert_close(torch.tensor([s["mean"], s["sd"]]), torch.tensor([2.0, 1.0]))
    assert protocol.summarise([5.0])["sd"] == 0.0
    runs = protocol.summarise_runs([{"nll": 1.0, "acc": 0.5}, {"nll": 3.0, "acc": 0.7}])
    assert_close(runs["acc"]["mean"], 0.6)
    with pytest.raises(ValueError, match="same metrics"):
        protocol.summarise_runs([{"nll": 1.0}, {"acc": 1.0}])
    d = protocol.paired_difference([1.0, 2.0, 4.0], [0.0, 1.0, 2.0])
    assert_close(d["mean"], 4 / 3)
    assert_close(d["se"], protocol.summarise([1.0, 1.0, 2.0])["sd"] / math.sqrt(3))
    with pytest.raises(ValueError, match="pair"):
        protocol.paired_difference([1.0], [1.0, 2.0])
