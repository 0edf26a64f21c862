"""The registry of named experiments and the manifest written with each full-scale result."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

import torch

__all__ = ["EXPERIMENTS", "Scale", "default_device", "load", "register", "run"]

Experiment = Callable[..., dict[str, Any]]
EXPERIMENTS: dict[str, Experiment] = {}
RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"


class Scale(str, Enum):
    """``ci``: CPU, seconds, what the book build and nbval run; ``full``: GPU-sized."""

    CI = "ci"
    FULL = "full"


def register(fn: Experiment) -> Experiment:
    """Add ``fn`` to the registry under its function name.

    An experiment takes ``scale``, ``device`` and ``seed`` keyword arguments and returns a
    JSON-serialisable dict.
    """
    if fn.__name__ in EXPERIMENTS:
        raise ValueError(f"an experiment named {fn.__name__!r} is already registered")
    EXPERIMENTS[fn.__name__] = fn
    return fn


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


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
    out_dir: Path | str | None = None,
) -> dict[str, Any]:
    """Run a registered experiment and return ``{"manifest": ..., "result": ...}``.

    Args:
        name: the experiment's registered name (``python -m blrlib.experiments --list``).
        scale: ``"ci"`` or ``"full"``.
        device: where to run; CUDA when available by default.
        seed: the base seed; the experiment derives any others from it.
        out_dir: if given, also write ``out_dir/NAME.json``.

    Raises:
        ValueError: unknown ``name`` or ``scale``.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"name must be one of {sorted(EXPERIMENTS)}; got {name!r}")
    try:
        scale = Scale(scale)
    except ValueError:
        raise ValueError(f"scale must be 'ci' or 'full'; got {scale!r}") from None
    device = torch.device(device) if device is not None else default_device()
    start = time.perf_counter()
    torch.manual_seed(seed)  # for any draw an experiment does not route through its generator
    result = EXPERIMENTS[name](scale=scale, device=device, seed=seed)
    manifest = {
        "experiment": name,
        "scale": scale.value,
        "git_commit": _git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "device": _device_name(device),
        "seed": seed,
        "wall_time_s": round(time.perf_counter() - start, 3),
    }
    record = {"manifest": manifest, "result": result}
    if out_dir is not None:
        path = Path(out_dir) / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1) + "\n")
    return record


def load(name: str, results_dir: Path | str | None = None) -> dict[str, Any] | None:
    """The committed full-scale record ``results/NAME.json``, or None if it does not exist yet."""
    path = Path(results_dir or RESULTS_DIR) / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())
