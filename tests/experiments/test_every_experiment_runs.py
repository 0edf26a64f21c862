"""Every registered experiment is run at ci scale by a test, or listed with its reason.

The static check lists ``EXPERIMENTS`` and the names the other test files run at ci scale
(``run("name", scale="ci", ...)`` or ``name(scale="ci", ...)``; calls that only check a bad
``n_seeds`` do not count). Of the rest, ``SMOKE`` runs here end to end with its ci sizes
shrunk (every integer size above 20 divided by 4, at least 20). ``SLOW`` are those whose ci
run costs 3-30 s of CPU even shrunk (measured on the 2-core machine): their chapter runs them
under nbval, and ``BLRLIB_SLOW_TESTS=1`` runs them here at ci scale; the check fails when a new
experiment is registered without a test, or when a SLOW one leaves its chapter.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import pytest

from blrlib import experiments
from blrlib.experiments import EXPERIMENTS, protocol, sgd

SMOKE = ["sgd_vem"]
SLOW = {  # name -> the chapter that runs it at ci scale
    "binary_enumeration": "binary", "dropout_learn_rate": "dropout", "dropout_moons": "dropout",
    "dropout_regression": "dropout", "primer_networks": "primer", "sgd_bridge": "sgd_bayes",
    "sgd_logistic": "sgd_bayes", "sgd_samplers": "sgd_bayes", "sgd_stationary": "sgd_bayes",
}  # fmt: skip
BOOK = Path(__file__).resolve().parents[2] / "book"

_RUN = re.compile(r"""\brun\(\s*["'](\w+)["'][^\n]*scale=["']ci["']""")
_DIRECT = re.compile(r"""\b(\w+)\(\s*scale=["']ci["']""")


def _run_by_other_tests() -> set[str]:
    names: set[str] = set()
    for path in Path(__file__).parent.glob("test_*.py"):
        if path.name == Path(__file__).name:
            continue
        for line in path.read_text().splitlines():
            if "n_seeds=0" not in line:
                names |= set(_RUN.findall(line)) | set(_DIRECT.findall(line))
    return names & set(EXPERIMENTS)


def test_every_registered_experiment_is_run_at_ci_scale():
    covered, smoke, slow = _run_by_other_tests(), set(SMOKE), set(SLOW)
    assert (smoke | slow) & covered == set(), "run by another test already: drop it here"
    assert smoke & slow == set() and (smoke | slow) <= set(EXPERIMENTS)
    missing = set(EXPERIMENTS) - covered - smoke - slow
    assert not missing, f"registered experiments no test runs: {sorted(missing)}"
    for name, chapter in SLOW.items():
        assert name in (BOOK / f"{chapter}.ipynb").read_text(), (name, chapter)


def _shrink(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | dict | tuple):
        return value
    if isinstance(value, int):
        return value if value <= 20 else max(20, value // 4)
    if isinstance(value, tuple):
        return tuple(_shrink(v) for v in value)
    return {k: _shrink(v) for k, v in value.items()}


def _no_infinity(tree: Any) -> bool:
    """No inf anywhere (NaN is allowed: the sd of a single seed is NaN)."""
    if isinstance(tree, dict):
        return all(_no_infinity(v) for v in tree.values())
    if isinstance(tree, list | tuple):
        return all(_no_infinity(v) for v in tree)
    return not (isinstance(tree, float) and math.isinf(tree))


_SLOW_PARAMS = [
    pytest.param(name, marks=pytest.mark.skipif(
        os.environ.get("BLRLIB_SLOW_TESTS") != "1", reason="slow: BLRLIB_SLOW_TESTS=1"))
    for name in sorted(SLOW)
]  # fmt: skip


@pytest.mark.parametrize("name", SMOKE + _SLOW_PARAMS)
def test_smoke_at_shrunk_ci_scale(name, monkeypatch):
    real = protocol.by_scale

    def tiny(scale, *args, **kwargs):
        value = real(scale, *args, **kwargs)
        return _shrink(value) if protocol.as_scale(scale) is protocol.Scale.CI else value

    if name in SMOKE:
        monkeypatch.setattr(protocol, "by_scale", tiny)
        monkeypatch.setattr(sgd, "by_scale", tiny)
    record = experiments.run(name, scale="ci", device="cpu")
    assert record["manifest"]["scale"] == "ci" and record["manifest"]["experiment"] == name
    assert isinstance(record["result"], dict) and record["result"]
    json.dumps(record["result"])  # a record must be JSON-serialisable
    assert _no_infinity(record["result"])
