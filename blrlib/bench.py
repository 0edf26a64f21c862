"""Per-step wall time of the blrlib optimizers as a ratio to ``torch.optim.Adam``.

    python -m blrlib.bench optim            # an MLP on CPU (and a CNN when CUDA is present)
    ...
    step_time_ratio_vs_adam=<x>             # the last line: VON, the Adam-cost optimizer

A step is what a training loop pays: zero_grad, the forward and backward pass (inside
``sampled_params`` for the BLR optimizers, ``opt.backward`` for VOGN) and ``step``.
Each optimizer is timed in interleaved rounds after a warm-up (round k of every optimizer runs
before round k + 1 of any), and the median round is used, so that all of them see the same
machine load. Not a test: timings depend on the machine, which :func:`environment` describes.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from blrlib import _checks, optim

__all__ = ["environment", "step_times"]


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
    if name == "vogn":
        return optim.VOGN(params, n_data=10_000, model=model, loss_fn=_ce)
    import ivon  # type: ignore[import-not-found]  # only when installed (see step_times)

    return ivon.IVON(params, lr=0.1, ess=10_000)


def _one_step(name: str, opt: Any, model: nn.Module, x: Tensor, y: Tensor) -> None:
    opt.zero_grad()
    if name == "adam":
        _ce(model(x), y).mean().backward()
    elif name == "vogn":
        with opt.sampled_params(train=True):
            opt.backward(x, y)
    else:
        with opt.sampled_params(train=True):
            _ce(model(x), y).mean().backward()
    opt.step()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    """Where a timing ran: the device (a GPU's name, or the CPU model), threads and versions."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {"device": f"{device.type}: {name}", "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}  # fmt: skip


def _spread(times: list[float]) -> float:
    """Median absolute deviation of the rounds over their median (0: every round the same)."""
    med = statistics.median(times)
    return statistics.median(abs(t - med) for t in times) / med


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
        names: among "adam" (always run), "adam_like", "von", "vogn", "ivon"; by default all,
            "ivon" only where the ``ivon-opt`` package is installed.
        hidden, batch: the MLP 64-hidden-hidden-10 and the batch size (default: 300k
            parameters, batch 128). Models and data are float32 whatever the default dtype.

    Returns:
        ``{"mlp/von": row, ...}``, each row with ``seconds`` (the median round's seconds per
        step), ``ratio`` (``seconds`` over Adam's), ``rounds`` (seconds per step of every
        round, in order), ``starts`` (each round's start, ``time.perf_counter``, showing the
        interleaving) and ``spread`` (median absolute deviation of the rounds / median).

    Raises:
        ValueError, TypeError: a count below 1, or an unknown name.
    """
    for value, label in ((steps, "steps"), (rounds, "rounds"), (warmup, "warmup"),
                         (hidden, "hidden"), (batch, "batch")):  # fmt: skip
        _checks.count(value, label)
    allowed = ("adam", "adam_like", "von", "vogn", "ivon")
    if names is None:
        names = ["adam_like", "von", "vogn"]
        if importlib.util.find_spec("ivon") is not None:
            names.append("ivon")
    for name in names:
        if name not in allowed:
            raise ValueError(f"names must be among {allowed}; got {name!r}")
    names = ["adam"] + [n for n in names if n != "adam"]
    result: dict[str, dict[str, Any]] = {}
    for model_name, (build, x, y) in _models(device, hidden, batch).items():
        x, y = x.to(device), y.to(device)
        runs = {}
        for name in names:
            torch.manual_seed(0)
            model = build().to(device)
            runs[name] = (_make(name, model), model, [], [])
        for name, (opt, model, _, _) in runs.items():
            for _ in range(warmup):
                _one_step(name, opt, model, x, y)
        for _ in range(rounds):
            for name, (opt, model, times, starts) in runs.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(steps):
                    _one_step(name, opt, model, x, y)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append((time.perf_counter() - start) / steps)
                starts.append(start)
        adam = statistics.median(runs["adam"][2])
        for name, (_, _, times, starts) in runs.items():
            med = statistics.median(times)
            result[f"{model_name}/{name}"] = {
                "seconds": med, "ratio": med / adam if adam > 0 else math.inf,
                "rounds": times, "starts": starts, "spread": _spread(times),
            }  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> None:
    """Print a table and, last, ``step_time_ratio_vs_adam=<x>`` for :class:`blrlib.optim.VON`."""
    parser = argparse.ArgumentParser(prog="python -m blrlib.bench")
    parser.add_argument("what", choices=["optim"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    result = step_times(device, steps=args.steps, rounds=args.rounds)
    env = environment(device)
    print(" ".join(f"{k}={v}" for k, v in env.items()))
    for key, row in result.items():
        print(f"{key:16s} {1e3 * row['seconds']:8.3f} ms/step  ratio_vs_adam={row['ratio']:.3f}"
              f"  spread={row['spread']:.3f}")  # fmt: skip
    main_model = "cnn" if device.type == "cuda" else "mlp"
    print(f"step_time_ratio_vs_adam={result[f'{main_model}/von']['ratio']:.3f}")


if __name__ == "__main__":
    main()
