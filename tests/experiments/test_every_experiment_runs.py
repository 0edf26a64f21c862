"""Every registered experiment is run at ci scale by a test, or here at shrunk ci sizes.

The static check lists ``EXPERIMENTS`` and the names the other test files run at ci scale
(``run("name", scale="ci", ...)`` or ``name(scale="ci", ...)``; calls that only check a bad
``n_seeds`` do not count). Every other experiment runs here end to end with its ci sizes shrunk
(:func:`_shrink`: each integer size above 20 divided by 10, at least 20), which takes 1-8 s of
CPU each on the 2-core machine instead of 3-30 s. So a newly registered experiment is run by
the suite from the start.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from blrlib import experiments
from blrlib.experiments import EXPERIMENTS, protocol

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


def _shrunk_here() -> list[str]:
    return sorted(set(EXPERIMENTS) - _run_by_other_tests())


def test_every_registered_experiment_is_run_at_ci_scale():
    assert _run_by_other_tests() <= set(EXPERIMENTS)
    assert len(_shrunk_here()) < len(EXPERIMENTS)  # the other test files are found


def _shrink(value: Any) -> Any:
    """Integer sizes above 20 divided by 10 (at least 20), in tuples, lists and dicts.

    A dict entry named ``n`` (a data set's size) is kept: it sets the step size at which the
    SGD experiments' iterations stay stable.
    """
    if isinstance(value, bool) or not isinstance(value, int | dict | tuple | list):
        return value
    if isinstance(value, int):
        return value if value <= 20 else max(20, value // 10)
    if isinstance(value, tuple | list):
        return type(value)(_shrink(v) for v in value)
    return {k: v if k == "n" else _shrink(v) for k, v in value.items()}


def _no_infinity(tree: Any) -> bool:
    """No inf anywhere (NaN is allowed: the sd of a single seed is NaN)."""
    if isinstance(tree, dict):
        return all(_no_infinity(v) for v in tree.values())
    if isinstance(tree, list | tuple):
        return all(_no_infinity(v) for v in tree)
    return not (isinstance(tree, float) and math.isinf(tree))


@pytest.mark.parametrize("name", _shrunk_here())
def test_smoke_at_shrunk_ci_scale(name, monkeypatch):
    real = protocol.by_scale

    def tiny(scale, *args, **kwargs):
        value = real(scale, *args, **kwargs)
        return _shrink(value) if protocol.as_scale(scale) is protocol.Scale.CI else value

    for module in list(sys.modules.values()):  # also where ``by_scale`` was imported by name
        if getattr(module, "by_scale", None) is real:
            monkeypatch.setattr(module, "by_scale", tiny)
    record = experiments.run(name, scale="ci", device="cpu")
    assert record["manifest"]["scale"] == "ci" and record["manifest"]["experiment"] == name
    assert isinstance(record["result"], dict) and record["result"]
    json.dumps(record["result"])  # a record must be JSON-serialisable
    assert _no_infinity(record["result"])
