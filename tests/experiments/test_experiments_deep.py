"""blrlib.experiments.deep: its scoring helpers, and the Fig 1 claim in 2-D (fast, ci scale)."""

from __future__ import annotations

import torch
from torch.testing import assert_close

from blrlib import infer
from blrlib.experiments import deep, deep_toys, protocol, run


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


def test_digits_splits_follow_the_protocol():
    """Stratified test (1/3) and validation (20 % of the rest) parts of the 1797 digits, every
    class in every part, standardised by the training part alone."""
    parts = deep.digits_splits(0, torch.device("cpu"))
    sizes = {k: len(parts[k][0]) for k in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797 and sizes["test"] == 599 and sizes["val"] == 239
    for k in ("train", "val", "test"):
        assert set(parts[k][1].tolist()) == set(range(10))
    assert parts["train"][0].mean(0).abs().max() < 1e-10  # centred on the training part
    assert parts["val"][0].mean(0).abs().max() > 1e-3  # ... and only on it
    assert parts["rotated"][0].shape == parts["noise"][0].shape == (599, 64)


def test_optim_digits_tunes_every_method_on_an_equal_grid(monkeypatch):
    """Tiny sizes: each method tried on its three settings, its winner the best validation
    NLL of its table, and scored once on test (one seed)."""
    for grids in deep.DIGITS_GRIDS.values():  # ci and full: three settings per method
        assert {len(protocol.grid_points(g)) for g in grids.values()} == {3}
    monkeypatch.setattr(deep, "_digits_sizes", lambda scale: dict(hidden=8, epochs=1,
                                                                   n_samples=2))  # fmt: skip
    res = run("optim_digits", scale="ci", device="cpu")["result"]
    assert set(res["summary"]) == set(deep.METHODS) and res["seeds"] == [0]
    assert res["grids"] == deep.DIGITS_GRIDS["ci"]
    for name, (table,) in res["tuned"].items():
        scores = [row["score"] for row in table["grid"]]
        assert len(scores) == 3 and table["score"] == min(scores)
        assert table["best"] == table["grid"][scores.index(min(scores))]["setting"]
        assert res["summary"][name]["nll"]["n"] == 1


def test_optim_moons_reports_both_starts_and_the_ratios(monkeypatch):
    monkeypatch.setattr(deep_toys, "_moons_sizes", lambda scale: dict(n=100, n_grid=6,
                                                                      epochs=10))  # fmt: skip
    res = run("optim_moons", scale="ci", device="cpu", n_seeds=2)["result"]
    assert set(res["per_seed"]) == {"adam", "von_h0=0.1", "von_h0=1"}
    adam, von = res["per_seed"]["adam"], res["per_seed"]["von_h0=1"]
    for r in ("far", "between"):
        expected = [v[f"entropy_{r}"] / a[f"entropy_{r}"] for v, a in zip(von, adam, strict=True)]
        assert res["ratio"]["von_h0=1"][r] == expected
    assert len(von[0]["precisions"]) == 6 and res["summary"]["adam"]["entropy_far"]["n"] == 2
    assert len(res["picture"]["entropy"]["adam"]) == 6


def test_head_ggn_in_chunks_is_laplace_on_all_examples():
    """Summing the chunks' GGNs (infer.laplace on 100 examples at a time, prior removed) gives
    infer.laplace's precision on all of them, less the prior: the GGN is a sum over examples."""
    g = torch.Generator().manual_seed(0)
    features, y = torch.randn(250, 4, generator=g), torch.randint(0, 3, (250,), generator=g)
    head = torch.nn.Linear(4, 3)
    bm = infer.BayesModel(head, "categorical", prior_precision=2.0)
    q = infer.laplace(bm, features, y, bm.theta0(), curvature="ggn")
    expected = torch.linalg.inv(q.cov) - 2.0 * torch.eye(bm.dim)
    assert_close(deep._head_ggn(head, features, y), expected, rtol=1e-10, atol=1e-10)
