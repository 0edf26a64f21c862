"""The registry of named experiments and the manifest written with each full-scale result."""

from __future__ import annotations

import datetime as dt
import inspect
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from blrlib import _checks
from blrlib.experiments.protocol import Scale, as_scale

__all__ = [
    "EXPERIMENTS", "Scale", "default_device", "describe", "is_stale", "load", "register", "run",
    "source_file", "tree_is_dirty",
]  # fmt: skip

Experiment = Callable[..., dict[str, Any]]
EXPERIMENTS: dict[str, Experiment] = {}
RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"


def register(fn: Experiment) -> Experiment:
    """Add ``fn`` to the registry under its function name.

    An experiment takes ``scale``, ``device`` and ``seed`` keyword arguments (and
    ``n_seeds``, if it runs over seeds) and returns a JSON-serialisable dict.
    """
    if fn.__name__ in EXPERIMENTS:
        raise ValueError(f"an experiment named {fn.__name__!r} is already registered")
    EXPERIMENTS[fn.__name__] = fn
    return fn


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _git(*args: str) -> str | None:
    """The output of ``git ARGS`` in this repository, or None if git fails."""
    try:
        out = subprocess.run(
            ["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def _git_commit() -> str:
    return _git("rev-parse", "HEAD") or "unknown"


def tree_is_dirty() -> bool:
    """Whether the library's code differs from the commit a record would name.

    Modified tracked files anywhere, or untracked files under ``blrlib/``, make it dirty;
    a tree that is not a git checkout counts as dirty too.
    """
    status = _git("status", "--porcelain", "--untracked-files=all")
    if status is None:
        return True
    root = _git("rev-parse", "--show-toplevel") or ""
    here = Path(__file__).resolve().parents[1].relative_to(root).as_posix() if root else "blrlib"
    for line in status.splitlines():
        untracked, path = line.startswith("??"), line[3:]
        if not untracked or path.startswith(here + "/"):
            return True
    return False


def source_file(name: str) -> Path:
    """The module that defines experiment ``name``."""
    return Path(inspect.getsourcefile(EXPERIMENTS[name]) or "")


def is_stale(name: str, results_dir: Path | str | None = None) -> bool:
    """Whether ``results/NAME.json`` is missing or older than the module that defines it.

    Older means: the last commit that changed the module is not an ancestor of the commit
    the record names (or that commit is not in this repository's history).
    """
    record = load(name, results_dir)
    if record is None:
        return True
    made_at = record["manifest"].get("git_commit", "unknown")
    changed_at = _git("log", "-1", "--format=%H", "--", str(source_file(name)))
    if not changed_at or _git("cat-file", "-e", f"{made_at}^{{commit}}") is None:
        return True
    return _git("merge-base", "--is-ancestor", changed_at, made_at) is None


def load_average() -> float | None:
    """The 1-minute load average (None where the OS does not say): with ``cpu_time_s`` it
    shows how much other processes stretched a record's wall time."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def run(
    name: str,
    *,
    scale: Scale | str = Scale.CI,
    device: torch.device | str | None = None,
    seed: int = 0,
    n_seeds: int | None = None,
    out_dir: Path | str | None = None,
) -> dict[str, Any]:
    """Run a registered experiment and return ``{"manifest": ..., "result": ...}``.

    Args:
        name: the experiment's registered name (``python -m blrlib.experiments --list``).
        scale: ``"ci"``, ``"full"`` or ``"gpu"``.
        device: where to run; CUDA when available by default.
        seed: the base seed; the experiment derives any others from it.
        n_seeds: how many seeds to run, overriding the experiment's count for ``scale``
            (only for experiments that run over seeds).
        out_dir: if given, also write ``out_dir/NAME.json``.

    Raises:
        ValueError: unknown ``name`` or ``scale``; ``n_seeds`` below 1, or given to an
            experiment that does not run over seeds; ``out_dir`` is ``results/`` while the
            working tree has uncommitted changes (the record must name the code that made it).
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"name must be one of {sorted(EXPERIMENTS)}; got {name!r}")
    scale = as_scale(scale)
    fn = EXPERIMENTS[name]
    options: dict[str, Any] = {}
    if n_seeds is not None:
        _checks.count(n_seeds, "n_seeds")
        if "n_seeds" not in inspect.signature(fn).parameters:
            raise ValueError(f"n_seeds: experiment {name!r} does not run over seeds")
        options["n_seeds"] = n_seeds
    if out_dir is not None and Path(out_dir).resolve() == RESULTS_DIR and tree_is_dirty():
        raise ValueError(
            "out_dir: the working tree has uncommitted changes; commit them before writing to "
            "results/, so that the record's commit names the code that produced it"
        )
    device = torch.device(device) if device is not None else default_device()
    load_start = load_average()
    start, cpu_start = time.perf_counter(), time.process_time()
    torch.manual_seed(seed)  # for any draw an experiment does not route through its generator
    result = fn(scale=scale, device=device, seed=seed, **options)
    manifest = {
        "experiment": name,
        "scale": scale.value,
        "git_commit": _git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "device": _device_name(device),
        "threads": torch.get_num_threads(),
        "seed": seed,
        "seeds": result.get("seeds") if isinstance(result, dict) else None,
        "n_seeds": n_seeds,
        "dirty": tree_is_dirty(),
        "wall_time_s": round(time.perf_counter() - start, 3),
        "cpu_time_s": round(time.process_time() - cpu_start, 3),  # all of its threads
        "load_avg_1min": [load_start, load_average()],  # at the start and at the end
    }
    record = {"manifest": manifest, "result": result}
    if out_dir is not None:
        path = Path(out_dir) / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1) + "\n")
    return record


def _key_paths(tree: Any, prefix: str = "") -> set[str]:
    """Every key path of nested dicts (``a/b/c``); lists and values are leaves."""
    if not isinstance(tree, dict):
        return set()
    paths = set()
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        paths |= {path} | _key_paths(value, path)
    return paths


def load(
    name: str, results_dir: Path | str | None = None, *, like: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The committed record ``results/NAME.json``, or None if there is none.

    Args:
        name: the experiment.
        results_dir: where the records are (``results/`` by default).
        like: a record (or its result) of the same experiment, say the ci-scale run of the
            chapter: the committed result must have exactly its keys, at every level of nested
            dicts, so that a record cannot silently go stale in shape.

    Raises:
        ValueError: the committed result's keys differ from those of ``like``.
    """
    path = Path(results_dir or RESULTS_DIR) / f"{name}.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if like is not None:
        expected = _key_paths(like.get("result", like) if "manifest" in like else like)
        found = _key_paths(record["result"])
        if expected != found:
            raise ValueError(
                f"like: results/{name}.json is stale in shape; missing keys "
                f"{sorted(expected - found)[:5]}, extra keys {sorted(found - expected)[:5]}; "
                f"rerun `python -m blrlib.experiments {name} --scale full`"
            )
    return record


def describe(name: str, results_dir: Path | str | None = None) -> str:
    """One line on the committed record of ``name``: its scale, seeds, device, time and commit.

    When there is none, the line says which command writes it.

    Raises:
        ValueError: unknown ``name``.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"name must be one of {sorted(EXPERIMENTS)}; got {name!r}")
    record = load(name, results_dir)
    if record is None:
        return (
            f"{name}: no record in results/; `python -m blrlib.experiments {name} --scale full` "
            "writes one."
        )
    m = record["manifest"]
    seeds = record["result"].get("seeds") if isinstance(record["result"], dict) else None
    n = len(seeds) if isinstance(seeds, list) else m.get("n_seeds") or 1
    cpu = f" ({m['cpu_time_s'] / 60:.1f} min CPU)" if "cpu_time_s" in m else ""
    return (
        f"{name}: {m['scale']} scale, {n} seed{'s' if n != 1 else ''}, {m['device']}, "
        f"torch {m['torch_version']}, {m['wall_time_s'] / 60:.1f} min{cpu}, "
        f"commit {m['git_commit'][:7]} ({m['date'][:10]})"
    )
