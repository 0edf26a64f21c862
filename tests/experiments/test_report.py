"""The results page's table: summaries found in nested results, chapters for every experiment."""

from __future__ import annotations

import json

import pytest

from blrlib import experiments
from blrlib.experiments import protocol, report


def test_every_experiment_has_a_chapter():
    for name in experiments.EXPERIMENTS:
        assert (report.ROOT_BOOK / f"{report.chapter(name)}.ipynb").is_file(), name
    with pytest.raises(ValueError, match="name"):
        report.chapter("fig99")


def test_summaries_are_found_with_their_path():
    result = {
        "seeds": [0, 1],
        "summary": {"adam": {"nll": protocol.summarise([1.0, 3.0])}},
        "table": [protocol.summarise([5.0])],  # summaries inside lists are not rows
    }
    found = report.summaries(result)
    assert [(path, s["mean"]) for path, s in found] == [("summary / adam / nll", 2.0)]


def test_rows_and_markdown(tmp_path):
    manifest = {
        "experiment": "optim_digits", "scale": "full", "git_commit": "abcdef0123", "date": "d",
        "torch_version": "t", "device": "cpu (2 threads)", "wall_time_s": 600.0,
    }  # fmt: skip
    result = {"summary": {"von": {"nll": protocol.summarise([0.1, 0.3])}}}
    (tmp_path / "optim_digits.json").write_text(json.dumps({"manifest": manifest,
                                                             "result": result}))  # fmt: skip
    rows = report.rows(tmp_path)
    assert len(rows) == 1 and rows[0]["chapter"] == "optim" and rows[0]["n"] == 2
    table = report.markdown(rows)
    row = "[optim_digits](optim.html) | summary / von / nll | 0.2 ± 0.14 | 2 | full | 10.0"
    assert row in table


def test_headline_lists_summaries_and_numbers(tmp_path):
    manifest = {
        "experiment": "sgd_vem", "scale": "full", "git_commit": "abcdef0123", "date": "2026-12-01",
        "torch_version": "t", "device": "cpu (1 threads)", "wall_time_s": 120.0,
    }  # fmt: skip
    result = {
        "seeds": [0, 1], "alpha": 7.5, "flag": True, "trace": [1.0, 2.0],
        "runs": {"gradient": {"learned": 7.25}, "kl": protocol.summarise([0.1, 0.3])},
    }  # fmt: skip
    (tmp_path / "sgd_vem.json").write_text(json.dumps({"manifest": manifest, "result": result}))
    lines = report.headline("sgd_vem", tmp_path).splitlines()
    assert lines[0].startswith("sgd_vem: full scale, 2 seeds") and "2.0 min" in lines[0]
    assert lines[1:] == ["  alpha: 7.5", "  runs / gradient / learned: 7.25",
                         "  runs / kl: 0.2 ± 0.14 (n = 2)"]  # fmt: skip
    assert report.headline("vi_gp", tmp_path).startswith("vi_gp: no record")
    with pytest.raises(ValueError, match="like"):
        report.headline("sgd_vem", tmp_path, like={"alpha": 1.0})
