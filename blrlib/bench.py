"""Per-step wall time of the blrlib optimizers as a ratio to ``torch.optim.Adam``.

    python -m blrlib.bench optim            # an MLP on CPU (and a CNN when CUDA is present)
    ...
    step_time_ratio_vs_adam=<x>             # the last line: VON, the Adam-cost optimizer

A step is what a training loop pays: zero_grad, the forward and backward pass (inside
``sampled_params`` for the BLR optimizers, ``opt.backward`` for VOGN) and ``step``.
Each optimizer is timed in interleaved rounds after a warm-up, and the median round is used, so
that all of them see the same machine load. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from blrlib import optim

__all__ = ["step_times"]


def _ce(f: Tensor, y: Tensor) -> Tensor:
    return nn.functional.cross_entropy(f, y, reduction="none")


def _mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
    )


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(128 * 64, 256), nn.ReLU(), nn.Linear(256, 10),
    )  # fmt: skip


def _models(device: torch.device) -> dict[str, tuple[Callable[[], nn.Module], Tensor, Tensor]]:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (128,), generator=g)
    out = {"mlp": (_mlp, torch.randn(128, 64, generator=g), y)}
    if device.type == "cuda":
        out["cnn"] = (_cnn, torch.randn(128, 3, 32, 32, generator=g), y)
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


def step_times(
    device: torch.device,
    *,
    steps: int = 50,
    rounds: int = 7,
    warmup: int = 20,
    names: list[str] | None = None,
) -> dict[str, dict[str, float]]:
    """Median seconds per step for each optimizer and model, and its ratio to Adam's.

    Args:
        device: where to run. steps, rounds, warmup: steps per timed round, rounds, warm-up.
        names: among "adam" (always run), "adam_like", "von", "vogn", "ivon"; by default all,
            "ivon" only where the ``ivon-opt`` package is installed.

    Returns:
        ``{"mlp/von": {"seconds": ..., "ratio": ...}, ...}``.
    """
    if names is None:
        names = ["adam_like", "von", "vogn"]
        if importlib.util.find_spec("ivon") is not None:
            names.append("ivon")
    names = ["adam"] + [n for n in names if n != "adam"]
    result: dict[str, dict[str, float]] = {}
    for model_name, (build, x, y) in _models(device).items():
        x, y = x.to(device), y.to(device)
        runs = {}
        for name in names:
            torch.manual_seed(0)
            model = build().to(device)
            runs[name] = (_make(name, model), model, [])
        for name, (opt, model, _) in runs.items():
            for _ in range(warmup):
                _one_step(name, opt, model, x, y)
        for _ in range(rounds):
            for name, (opt, model, times) in runs.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(steps):
                    _one_step(name, opt, model, x, y)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append((time.perf_counter() - start) / steps)
        adam = statistics.median(runs["adam"][2])
        for name, (_, _, times) in runs.items():
            med = statistics.median(times)
            result[f"{model_name}/{name}"] = {"seconds": med, "ratio": med / adam}
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
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()}")
    for key, row in result.items():
        print(f"{key:16s} {1e3 * row['seconds']:8.3f} ms/step  ratio_vs_adam={row['ratio']:.3f}")
    main_model = "cnn" if device.type == "cuda" else "mlp"
    print(f"step_time_ratio_vs_adam={result[f'{main_model}/von']['ratio']:.3f}")


if __name__ == "__main__":
    main()
