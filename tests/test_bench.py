"""blrlib.bench: the reported medians, ratios and interleaving are what the rounds show.

Timings themselves are not tested (they depend on the machine); what is tested is that the
numbers the chapter prints are computed from the rounds as documented.
"""

from __future__ import annotations

import json
import math
import statistics

import pytest
import torch

from blrlib import bench


def test_step_times_report_medians_ratios_and_interleaved_rounds():
    times = bench.step_times(torch.device("cpu"), steps=2, rounds=3, warmup=1,
                             names=["von"], hidden=32, batch=16)  # fmt: skip
    assert set(times) == {"mlp/adam", "mlp/von"}  # float32 models under a float64 default
    adam, von = times["mlp/adam"], times["mlp/von"]
    for row in (adam, von):
        assert len(row["rounds"]) == 3 and len(row["starts"]) == 3
        assert row["seconds"] == statistics.median(row["rounds"])
        assert all(math.isfinite(t) and t > 0 for t in row["rounds"])
        assert 0 <= row["spread"] < math.inf
    # the ratio is VON's median over Adam's, recomputed from the rounds
    ratio = statistics.median(von["rounds"]) / statistics.median(adam["rounds"])
    assert von["ratio"] == ratio and math.isfinite(ratio)
    # interleaved: round k of Adam, then round k of VON, then round k + 1 of Adam
    order = sorted([(t, "adam") for t in adam["starts"]] + [(t, "von") for t in von["starts"]])
    assert [name for _, name in order] == ["adam", "von"] * 3


def test_environment_and_bad_arguments():
    env = bench.environment(torch.device("cpu"))
    assert env["device"].startswith("cpu: ") and env["threads"] >= 1
    assert env["torch"] == torch.__version__
    with pytest.raises(ValueError, match="rounds"):
        bench.step_times(torch.device("cpu"), rounds=0)
    with pytest.raises(ValueError, match="names"):
        bench.step_times(torch.device("cpu"), names=["sgd"])


def test_compare_profile_and_the_json_record(tmp_path, capsys):
    """The command line at a tiny width and 2 rounds: a table per width, the profile's parts,
    a json record with its manifest, and the ratio of VON as the last line."""
    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    bench.main(["optim", "--widths", "8", "16", "--rounds", "2", "--step-seconds", "0.002",
                "--names", "von", "von_rademacher", "--threads", "1", "--profile",
                "--out", str(out)])  # fmt: skip
    torch.set_num_threads(threads)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    record = json.loads(out.read_text())
    assert set(record["table"]) == {"8", "16"}
    von = record["table"]["16"]["mlp/von"]
    assert von["params"] == 64 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10
    assert last == f"step_time_ratio_vs_adam={record['table']['8']['mlp/von']['ratio']:.3f}"
    for key in ("git_commit", "dirty", "date", "device", "threads", "torch", "load_avg_1min"):
        assert key in record["manifest"]
    assert record["manifest"]["threads"] == 1
    prof = record["profile"]
    assert set(prof) == {"mlp/adam", "mlp/von", "mlp/von_rademacher", "mlp/fills"}
    assert all(prof["mlp/von"][p] >= 0 for p in bench.PARTS)
    # the fills are timed on as many numbers as the profiled model (width 8) has parameters
    assert all(prof["mlp/fills"][f] > 0 for f in bench.FILLS)
    assert prof["mlp/fills"]["params"] == prof["mlp/von"]["params"] == 64 * 8 + 8 + 8 * 8 + 8 + 90
