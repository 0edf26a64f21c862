"""Per-step wall time of the blrlib optimizers side by side with ``torch.optim.Adam``.

    python -m blrlib.bench optim --threads 1              # the table at widths 128, 512, 2048
    python -m blrlib.bench optim --threads 1 --profile    # and where one step's time goes
    python -m blrlib.bench optim --threads 1 --out results/bench_optim_cpu.json
    ...
    step_time_ratio_vs_adam=<x>                           # the last line: VON, width 512

A step is what a training loop pays: zero_grad, the forward and backward pass (inside
``sampled_params`` for the BLR optimizers, ``opt.backward`` for VOGN) and ``step``.
Each optimizer is timed in interleaved rounds after a warm-up (round k of every optimizer runs
before round k + 1 of any), and the median round is used, so that all of them see the same
machine load. Not a test: timings depend on the machine, which :func:`environment` describes
(with the load average, as other processes slow every optimizer down, not always equally).

Used in :doc:`/book/optim` (the cost of a step).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from blrlib import _checks, optim
from blrlib.optim._draws import rademacher_

__all__ = [
    "FILLS", "PARTS", "RECORD", "WIDTHS", "compare", "describe", "environment", "load", "profile",
    "profile_lines", "step_times", "table_lines",
]  # fmt: skip

WIDTHS = (128, 512, 2048)  # hidden widths of the MLP 64-w-w-10: 26k, 300k and 4.3M parameters
PARTS = ("draw", "forward", "backward", "restore", "step")
"""The parts of one step that ``profile`` times, in order."""
FILLS = ("gaussian", "signs", "pass")
"""What ``profile`` also times on as many float32 numbers as the model has parameters: torch's
Gaussian numbers (``normal_``), random signs (``optim._draws.rademacher_``, one
32-bit word per 32 numbers) and one elementwise pass (``add_``), the unit in which the rest of
a step's work on every weight is counted."""
ALLOWED = ("adam", "adam_like", "von", "von_rademacher", "vogn", "ivon")


def _ce(f: Tensor, y: Tensor) -> Tensor:
    return nn.functional.cross_entropy(f, y, reduction="none")


def _mlp(hidden: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        return nn.Sequential(
            nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 10),
        ).float()  # fmt: skip

    return build


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(128 * 64, 256), nn.ReLU(), nn.Linear(256, 10),
    ).float()  # fmt: skip


def _models(
    device: torch.device, hidden: int, batch: int
) -> dict[str, tuple[Callable[[], nn.Module], Tensor, Tensor]]:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (batch,), generator=g)
    f32 = torch.float32  # as networks are trained, whatever the default dtype
    out = {"mlp": (_mlp(hidden), torch.randn(batch, 64, generator=g, dtype=f32), y)}
    if device.type == "cuda":
        out["cnn"] = (_cnn, torch.randn(batch, 3, 32, 32, generator=g, dtype=f32), y)
    return out


def _make(name: str, model: nn.Module) -> Any:
    params = model.parameters()
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3, foreach=True)
    if name == "adam_like":
        return optim.AdamLike(params, n_data=10_000)
    if name == "von":
        return optim.VON(params, n_data=10_000)
    if name == "von_rademacher":
        return optim.VON(params, n_data=10_000, draws="rademacher")
    if name == "vogn":
        return optim.VOGN(params, n_data=10_000, model=model, loss_fn=_ce)
    import ivon  # type: ignore[import-not-found]  # only when installed (see step_times)

    return ivon.IVON(params, lr=0.1, ess=10_000)


def _one_step(
    name: str, opt: Any, model: nn.Module, x: Tensor, y: Tensor, tick: Callable[[], None]
) -> None:
    """zero_grad, then ``tick()`` at the start and after each of :data:`PARTS`."""
    opt.zero_grad()
    tick()
    draw = nullcontext() if name == "adam" else opt.sampled_params(train=True)
    with draw:
        tick()
        if getattr(opt, "model", None) is not None:  # VOGN: the forward pass is inside
            # backward (per-example gradients)
            tick()
            opt.backward(x, y)
        else:
            loss = _ce(model(x), y).mean()
            tick()
            loss.backward()
        tick()
    tick()
    opt.step()
    tick()


def _no_tick() -> None:
    pass


def _mark(marks: list[float], sync: Callable[[], None]) -> None:
    sync()
    marks.append(time.perf_counter())


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    """Where a timing ran: the device (a GPU's name, or the CPU model), threads, versions, and
    the 1-minute load average (other processes running; None where the OS does not say)."""
    from blrlib.experiments._registry import load_average  # as the experiments' manifests

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {"device": f"{device.type}: {name}", "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "load_avg_1min": load_average()}  # fmt: skip


def _spread(times: list[float]) -> float:
    """Median absolute deviation of the rounds over their median (0: every round the same)."""
    med = statistics.median(times)
    return statistics.median(abs(t - med) for t in times) / med


def _names(names: list[str] | None) -> list[str]:
    if names is None:
        names = ["adam_like", "von", "von_rademacher", "vogn"]
        if importlib.util.find_spec("ivon") is not None:
            names.append("ivon")
    for name in names:
        if name not in ALLOWED:
            raise ValueError(f"names must be among {ALLOWED}; got {name!r}")
    return ["adam"] + [n for n in names if n != "adam"]


def _setup(
    device: torch.device, names: list[str], hidden: int, batch: int
) -> dict[str, tuple[Tensor, Tensor, dict[str, tuple[Any, nn.Module]]]]:
    out = {}
    for model_name, (build, x, y) in _models(device, hidden, batch).items():
        runs = {}
        for name in names:
            torch.manual_seed(0)
            model = build().to(device)
            runs[name] = (_make(name, model), model)
        out[model_name] = (x.to(device), y.to(device), runs)
    return out


def step_times(
    device: torch.device,
    *,
    steps: int = 50,
    rounds: int = 7,
    warmup: int = 20,
    names: list[str] | None = None,
    hidden: int = 512,
    batch: int = 128,
) -> dict[str, dict[str, Any]]:
    """Median seconds per step for each optimizer and model, and its ratio to Adam's.

    Args:
        device: where to run. steps, rounds, warmup: steps per timed round, rounds, warm-up
            steps (each at least 1).
        names: among "adam" (always run), "adam_like", "von", "von_rademacher" (VON with
            ``draws="rademacher"``), "vogn", "ivon"; by default all, "ivon" only where the
            ``ivon-opt`` package is installed.
        hidden, batch: the MLP 64-hidden-hidden-10 and the batch size (default: 300k
            parameters, batch 128). Models and data are float32 whatever the default dtype.

    Returns:
        ``{"mlp/von": row, ...}``, each row with ``seconds`` (the median round's seconds per
        step), ``ratio`` (``seconds`` over Adam's), ``rounds`` (seconds per step of every
        round, in order), ``starts`` (each round's start, ``time.perf_counter``, showing the
        interleaving), ``spread`` (median absolute deviation of the rounds / median) and
        ``params`` (the model's parameter count).

    Raises:
        ValueError, TypeError: a count below 1, or an unknown name.
    """
    for value, label in ((steps, "steps"), (rounds, "rounds"), (warmup, "warmup"),
                         (hidden, "hidden"), (batch, "batch")):  # fmt: skip
        _checks.count(value, label)
    names = _names(names)
    sync = torch.cuda.synchronize if device.type == "cuda" else _no_tick
    result: dict[str, dict[str, Any]] = {}
    for model_name, (x, y, runs) in _setup(device, names, hidden, batch).items():
        for name, (opt, model) in runs.items():
            for _ in range(warmup):
                _one_step(name, opt, model, x, y, _no_tick)
        times: dict[str, list[float]] = {name: [] for name in runs}
        starts: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, (opt, model) in runs.items():
                sync()
                start = time.perf_counter()
                for _ in range(steps):
                    _one_step(name, opt, model, x, y, _no_tick)
                sync()
                times[name].append((time.perf_counter() - start) / steps)
                starts[name].append(start)
        adam = statistics.median(times["adam"])
        n_params = sum(p.numel() for p in runs["adam"][1].parameters())
        for name in runs:
            med = statistics.median(times[name])
            result[f"{model_name}/{name}"] = {
                "seconds": med, "ratio": med / adam if adam > 0 else math.inf,
                "rounds": times[name], "starts": starts[name], "spread": _spread(times[name]),
                "params": n_params,
            }  # fmt: skip
    return result


def compare(
    device: torch.device,
    *,
    widths: tuple[int, ...] = WIDTHS,
    step_seconds: float = 0.5,
    rounds: int = 7,
    names: list[str] | None = None,
    batch: int = 128,
) -> dict[int, dict[str, dict[str, Any]]]:
    """:func:`step_times` at each width, with about ``step_seconds`` of Adam per round.

    The steps per round are ``step_seconds`` over Adam's time for one step (measured after a
    warm-up of 3 steps), at least 2; the warm-up of each timed optimizer is half that many.

    Returns:
        ``{width: step_times(...)}``.

    Raises:
        ValueError, TypeError: a width, ``rounds`` or ``batch`` below 1, ``step_seconds``
            not positive, or an unknown name.
    """
    _checks.positive_float(step_seconds, "step_seconds")
    out = {}
    for width in widths:
        _checks.count(width, "widths")
        probe = step_times(device, steps=1, rounds=1, warmup=3, names=["adam"],
                           hidden=width, batch=batch)  # fmt: skip
        per_step = min(row["seconds"] for row in probe.values())
        steps = max(2, round(step_seconds / per_step))
        out[width] = step_times(device, steps=steps, rounds=rounds, warmup=max(1, steps // 2),
                                names=names, hidden=width, batch=batch)  # fmt: skip
    return out


def profile(
    device: torch.device,
    *,
    steps: int = 20,
    warmup: int = 5,
    names: list[str] | None = None,
    hidden: int = 512,
    batch: int = 128,
) -> dict[str, dict[str, float]]:
    """The least seconds of each part of a step (:data:`PARTS`) over ``steps`` steps, steps
    interleaved by optimizer: on a shared machine a part that another process interrupted
    takes longer, never shorter, so the minimum is what the part itself costs.

    ``draw`` is entering ``sampled_params``, ``restore`` leaving it (both 0 for Adam); for
    VOGN ``backward`` is ``opt.backward`` (its forward pass included) and ``forward`` is 0.
    zero_grad is left out, so the parts add up to a little less than :func:`step_times`.
    The row ``"mlp/fills"`` gives the least seconds of each of :data:`FILLS` on P numbers,
    timed once after each round of steps (with torch's global generator, as the optimizers').

    Returns:
        ``{"mlp/von": {"draw": s, ..., "params": P}, ..., "mlp/fills": {"gaussian": s, ...,
        "params": P}}``.
    """
    _checks.count(steps, "steps")
    _checks.count(warmup, "warmup")
    names = _names(names)
    sync = torch.cuda.synchronize if device.type == "cuda" else _no_tick
    result: dict[str, dict[str, float]] = {}
    for model_name, (x, y, runs) in _setup(device, names, hidden, batch).items():
        n_params = sum(p.numel() for p in runs["adam"][1].parameters())
        fills = _fills(device, n_params)
        parts: dict[str, list[list[float]]] = {name: [] for name in [*runs, "fills"]}
        for i in range(warmup + steps):
            for name, (opt, model) in runs.items():
                marks: list[float] = []
                _one_step(name, opt, model, x, y, partial(_mark, marks, sync))
                if i >= warmup:
                    parts[name].append([b - a for a, b in zip(marks[:-1], marks[1:], strict=True)])
            marks = []
            _mark(marks, sync)
            for fill in fills:
                fill()
                _mark(marks, sync)
            if i >= warmup:
                parts["fills"].append([b - a for a, b in zip(marks[:-1], marks[1:], strict=True)])
        for name, rows in parts.items():
            keys = FILLS if name == "fills" else PARTS
            least: dict[str, float] = {p: min(r[k] for r in rows) for k, p in enumerate(keys)}
            least["params"] = n_params
            result[f"{model_name}/{name}"] = least
    return result


def _fills(device: torch.device, n: int) -> list[Callable[[], object]]:
    """The :data:`FILLS` on ``n`` float32 numbers, in that order."""
    x = torch.empty(-(-n // 32) * 32, dtype=torch.float32, device=device)  # whole words
    y = torch.ones_like(x)
    return [lambda: x[:n].normal_(), lambda: rademacher_(x), lambda: x[:n].add_(y[:n])]


def _manifest(device: torch.device) -> dict[str, Any]:
    from blrlib.experiments import _registry  # git commit and dirty flag, as for the records

    return {
        "what": "python -m blrlib.bench optim", "git_commit": _registry._git_commit(),
        "dirty": _registry.tree_is_dirty(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **environment(device),
    }  # fmt: skip


RECORD = Path(__file__).resolve().parents[1] / "results" / "bench_optim_cpu.json"


def load(path: Path | str = RECORD) -> dict[str, Any]:
    """A record written by ``python -m blrlib.bench optim --out PATH`` (by default the
    committed CPU one): ``{"manifest": ..., "table": {width: rows}, "profile": ...}``."""
    return json.loads(Path(path).read_text())


def describe(record: dict[str, Any]) -> str:
    """One line: the machine, threads, torch version, load average, date and commit."""
    m = record["manifest"]
    return (f"{m['device']}, {m['threads']} thread(s), torch {m['torch']}, load average "
            f"{m['load_avg_1min']} to {m.get('load_avg_1min_end')}, {m['date']}, "
            f"commit {m['git_commit'][:7]}{' (dirty)' if m['dirty'] else ''}")  # fmt: skip


def table_lines(table: dict[Any, dict[str, dict[str, Any]]]) -> list[str]:
    """The table as text: width, parameters, optimizer, ms per step, ratio to Adam, spread."""
    lines = [f"{'width':>6s} {'params':>9s} {'optimizer':18s} {'ms/step':>9s} {'ratio':>6s}"
             f" {'spread':>6s}"]  # fmt: skip
    for width, rows in table.items():
        for key, row in rows.items():
            lines.append(f"{int(width):6d} {row['params']:9d} {key:18s}"
                         f" {1e3 * row['seconds']:9.3f} {row['ratio']:6.3f}"
                         f" {row['spread']:6.3f}")  # fmt: skip
    return lines


def profile_lines(prof: dict[str, dict[str, float]]) -> list[str]:
    """The profile as text: ms of each part, and ns per parameter in brackets."""
    lines = ["least ms of each part of a step (ns per parameter in brackets)"]
    for key, row in prof.items():
        keys = FILLS if key.endswith("/fills") else PARTS
        cells = [f"{p} {1e3 * row[p]:.3f} ({1e9 * row[p] / row['params']:.2f})" for p in keys]
        lines.append(f"{key:18s} " + ", ".join(cells))
    return lines


def main(argv: list[str] | None = None) -> None:
    """Print the table and, last, ``step_time_ratio_vs_adam=<x>`` for :class:`blrlib.optim.VON`
    at width 512 (on CUDA: the CNN)."""
    parser = argparse.ArgumentParser(prog="python -m blrlib.bench")
    parser.add_argument("what", choices=["optim"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS))
    parser.add_argument("--step-seconds", type=float, default=0.5,
                        help="about this much of Adam's time per round")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--names", nargs="+", choices=ALLOWED[1:], default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--profile", action="store_true", help="also time each part")
    parser.add_argument("--out", type=Path, default=None, help="write the results as json")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(_checks.count(args.threads, "threads"))
    device = torch.device(args.device)
    manifest = _manifest(device)
    names = _names(args.names)
    if "ivon" not in names and args.names is None:
        print("ivon: not installed (pip install ivon-opt), its row is left out")
    table = compare(device, widths=tuple(args.widths), step_seconds=args.step_seconds,
                    rounds=args.rounds, names=names[1:])  # fmt: skip
    print(" ".join(f"{k}={v}" for k, v in manifest.items()))
    print("\n".join(table_lines(table)))
    prof = None
    if args.profile:
        width = 512 if 512 in args.widths else args.widths[0]
        prof = profile(device, names=names[1:], hidden=width)
        print("\n".join(profile_lines(prof)))
    manifest["load_avg_1min_end"] = environment(device)["load_avg_1min"]
    if args.out is not None:
        record = {"manifest": manifest, "table": {str(w): r for w, r in table.items()},
                  "profile": prof}  # fmt: skip
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    main_model = "cnn" if device.type == "cuda" else "mlp"
    width = 512 if 512 in table else next(iter(table))
    print(f"step_time_ratio_vs_adam={table[width][f'{main_model}/von']['ratio']:.3f}")


if __name__ == "__main__":
    main()
