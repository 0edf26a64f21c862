"""The binary-network experiments: their pieces against brute force, and tiny end-to-end runs.

The chapter runs the ci scale; here each experiment runs with sizes shrunk to a second
(monkeypatched), which checks the protocol's wiring: grids of equal size, the winner's
setting taken from the grid by its validation score, one test score per seed.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from blrlib import experiments
from blrlib.experiments import binary

F64 = torch.float64
CPU = torch.device("cpu")


def test_digits_split_is_a_stratified_partition_standardised_on_train():
    """Every image lands in exactly one part (per-class counts add up to the data set's), a
    quarter of each class is test, every class is in every part, and the training part is
    centred (the standardisation uses its statistics only)."""
    from sklearn.datasets import load_digits

    labels = torch.as_tensor(load_digits(return_X_y=True)[1])
    tr, va, te = binary.digits_split(0, CPU)
    total = sum(torch.bincount(part[1], minlength=10) for part in (tr, va, te))
    assert torch.equal(total, torch.bincount(labels, minlength=10))
    expected_test = sum(round(0.25 * int(c)) for c in torch.bincount(labels))
    assert len(te[1]) == expected_test
    for part in (tr, va, te):
        assert set(part[1].tolist()) == set(range(10))
    assert_close(tr[0].mean(0), torch.zeros(64, dtype=tr[0].dtype), rtol=0, atol=1e-5)


def test_binary_mlp_initialisations():
    net = binary.binary_mlp([64, 8, 10], init="bayesbinn", device=CPU, seed=0)
    lam = torch.cat([p.detach().flatten() for p in net.parameters()])
    assert torch.equal(lam.abs(), torch.full_like(lam, binary.REFERENCE_LAM))
    assert 0.3 < float((lam > 0).float().mean()) < 0.7  # random signs
    net = binary.binary_mlp([64, 8, 10], init="ste", device=CPU, seed=0)
    first = next(net.parameters()).detach()
    assert float(first.abs().max()) <= math.sqrt(1.5 / (64 + 8))
    with pytest.raises(ValueError, match="init"):
        binary.binary_mlp([64, 8, 10], init="zeros", device=CPU, seed=0)


@pytest.fixture
def tiny(monkeypatch):
    """Sizes and grids shrunk so that each experiment runs in about a second."""
    monkeypatch.setattr(
        binary, "_digits_sizes", lambda scale: dict(hidden=[16], epochs=2, draws=[1, 2])
    )
    monkeypatch.setattr(
        binary, "_continual_sizes", lambda scale: dict(tasks=2, hidden=[16], epochs=2, draws=2)
    )
    grids = {"ste": {"lr": [1e-2, 1e-1]}, "bayesbinn": {"lr": [1e-2, 1e-1]}}
    monkeypatch.setattr(binary, "DIGITS_GRIDS", grids)
    monkeypatch.setattr(binary, "CONTINUAL_GRIDS", grids)


def _winner_is_the_best_on_validation(tuning: dict) -> None:
    for t in tuning.values():
        scores = {repr(g["setting"]): g["score"] for g in t["grid"]}
        assert scores[repr(t["best"])] == min(scores.values())


def test_digits_runs_the_protocol(tiny):
    result = experiments.run("binary_digits", scale="ci", device="cpu", n_seeds=2)["result"]
    assert result["seeds"] == [0, 1]
    for tuning in result["tuning"]:
        _winner_is_the_best_on_validation(tuning)
    for method in ("ste", "bayesbinn_mode", "bayesbinn_predictive"):
        assert result["metrics"][method]["accuracy"]["n"] == 2
        assert 0 <= result["metrics"][method]["accuracy"]["mean"] <= 1
    assert len(result["curves"][0]["ste"]) == 2  # one validation point per epoch
    assert set(result["draws"][0]) == {"0", "1", "2"}
    assert 0 <= result["q"][0]["undecided"] <= 1


def test_temperature_and_continual_run(tiny):
    temp = experiments.run("binary_temperature", scale="ci", device="cpu")["result"]
    assert set(temp["temperatures"]) == {"1e-10", "0.01"}  # ci: the reference and 1e-2
    cl = experiments.run("binary_continual", scale="ci", device="cpu")["result"]
    row = cl["per_seed"][0]
    _winner_is_the_best_on_validation(row["tuning"])
    assert len(row["ste"]["accuracy"]) == 2 and len(row["ste"]["accuracy"][0]) == 2
    assert cl["paired"]["bayesbinn-ste"]["n"] == 1
