"""blrlib.experiments.deep: its scoring helpers, and the Fig 1 claim in 2-D (fast, ci scale)."""

from __future__ import annotations

import torch
from torch.testing import assert_close

from blrlib.experiments import deep, run


def test_entropy_and_auroc():
    uniform, certain = torch.full((1, 4), 0.25), torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert_close(deep.entropy(uniform), torch.log(torch.tensor([4.0])))
    assert_close(deep.entropy(certain), torch.zeros(1))
    assert deep.auroc(torch.zeros(5), torch.ones(5)) == 1.0
    assert deep.auroc(torch.ones(5), torch.zeros(5)) == 0.0
    assert deep.auroc(torch.ones(5), torch.ones(5)) == 0.5  # ties count one half


def test_reliability_bins():
    probs = torch.tensor([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.55, 0.45]])
    y = torch.tensor([0, 1, 0, 0])
    rel = deep.reliability(probs, y)
    assert rel["count"][9] == 2 and rel["count"][5] == 2 and sum(rel["count"]) == 4
    assert rel["accuracy"][9] == 0.5 and rel["accuracy"][5] == 1.0
    assert_close(torch.tensor(rel["confidence"][9]), torch.tensor(0.95))


def test_sharp_flat_2d_claim():
    """Adam keeps to the nearest well; VON's posterior moves (almost) every coordinate to the
    flat well (one noisy draw per step with N = 1: a coordinate in 288 may wander)."""
    res = run("optim_sharp_flat_2d", scale="ci", device="cpu")["result"]
    assert res["fraction_flat"]["adam"] < 0.8
    assert res["fraction_flat"]["von"] > 0.95
