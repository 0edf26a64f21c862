"""blrlib.bench runs and reports a ratio to Adam (timings themselves are not tested)."""

from __future__ import annotations

import torch

from blrlib import bench


def test_step_times_reports_ratios(capsys):
    torch.set_default_dtype(torch.float32)  # the benchmark's models are float32, as in use
    times = bench.step_times(torch.device("cpu"), steps=2, rounds=2, warmup=1, names=["von"])
    assert set(times) == {"mlp/adam", "mlp/von"}
    assert times["mlp/adam"]["ratio"] == 1.0
    assert times["mlp/von"]["seconds"] > 0
