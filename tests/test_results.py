"""Every committed record in results/: a complete manifest, a commit in this history, full scale.

Whether a record's keys match what its experiment returns now is checked where the record is
shown: each chapter loads it with ``experiments.load(NAME, like=<its ci run>)``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from blrlib import experiments

RESULTS = Path(__file__).resolve().parents[1] / "results"
RECORDS = sorted(p for p in RESULTS.glob("*.json") if not p.stem.startswith("bench_"))
BENCH_RECORDS = sorted(RESULTS.glob("bench_*.json"))  # python -m blrlib.bench optim --out
MANIFEST_KEYS = {
    "experiment", "scale", "git_commit", "date", "torch_version", "device", "threads", "seed",
    "seeds", "dirty", "wall_time_s",
}  # fmt: skip


@pytest.mark.parametrize("path", RECORDS, ids=[p.stem for p in RECORDS])
def test_record(path: Path) -> None:
    record = json.loads(path.read_text())
    manifest = record["manifest"]
    assert MANIFEST_KEYS <= set(manifest), f"manifest lacks {MANIFEST_KEYS - set(manifest)}"
    assert manifest["experiment"] == path.stem and path.stem in experiments.EXPERIMENTS
    assert manifest["scale"] in ("full", "gpu"), "only full or gpu records are committed"
    assert manifest["dirty"] is False, "a record must come from a committed tree"
    assert manifest["wall_time_s"] > 0
    subprocess.run(
        ["git", "cat-file", "-e", f"{manifest['git_commit']}^{{commit}}"],
        cwd=RESULTS, check=True, capture_output=True,
    )  # fmt: skip  # the commit is in this repository's history


@pytest.mark.parametrize("path", BENCH_RECORDS, ids=[p.stem for p in BENCH_RECORDS])
def test_bench_record(path: Path) -> None:
    """A timing table: its manifest names a committed tree, the machine, threads and load."""
    record = json.loads(path.read_text())
    manifest = record["manifest"]
    keys = {"git_commit", "dirty", "date", "device", "threads", "torch", "load_avg_1min"}
    assert keys <= set(manifest), f"manifest lacks {keys - set(manifest)}"
    assert manifest["dirty"] is False, "a record must come from a committed tree"
    assert record["table"] and all("mlp/adam" in rows for rows in record["table"].values())
    subprocess.run(
        ["git", "cat-file", "-e", f"{manifest['git_commit']}^{{commit}}"],
        cwd=RESULTS, check=True, capture_output=True,
    )  # fmt: skip
