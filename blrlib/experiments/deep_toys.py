"""The chapter's pictures of Sec 4.4: two moons and Fig 1(b) in 2-D (see ``deep`` for digits).

from blrlib import experiments
moons = experiments.run("optim_moons", scale="ci")["result"]
moons["summary"]["von"]["entropy_far"]      # mean and sd over seeds

"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from blrlib import metrics, optim
from blrlib.experiments import protocol
from blrlib.experiments._registry import Scale, register
from blrlib.experiments.deep import F64, _mlp, _predict_all, entropy, fit

__all__ = ["optim_moons", "optim_sharp_flat_2d"]


MOONS = dict(adam_lr=1e-2, von_lr=0.1, hess_inits=(0.1, 1.0), forget=10.0, batch=50)
"""Fixed before any run (moons has no test split and nothing is tuned): Adam's lr 1e-2, VON's
documented lr 0.1, two initial h a factor 10 apart, and VON's precision rate
beta = forget / steps, so that h keeps exp(-10) < 5e-5 of its start."""


def _moons_sizes(scale: Scale) -> dict[str, int]:
    return protocol.by_scale(scale, ci=dict(n=200, n_grid=50, epochs=200),
                             full=dict(n=1000, n_grid=200, epochs=1000))  # fmt: skip


def _moons_grid(device: torch.device, n: int) -> tuple[Tensor, Tensor, Tensor]:
    xs = torch.linspace(-3.0, 4.0, n, dtype=F64, device=device)
    ys = torch.linspace(-3.0, 3.5, n, dtype=F64, device=device)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    return xs, ys, torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)


def _layer_precisions(net: nn.Module, opt: Any) -> list[float]:
    """The geometric mean of the posterior precision s = N h + delta of each parameter tensor."""
    return [float(opt.precision(p).log().mean().exp()) for p in net.parameters()]


def _moons_seed(seed: int, sizes: dict[str, int], device: torch.device, picture: bool):
    from blrlib import data

    X, y = data.two_moons(sizes["n"], noise=0.1, seed=seed, dtype=F64, device=device)
    y = y.long()
    xs, ys, grid = _moons_grid(device, sizes["n_grid"])
    dist = torch.cdist(grid, X).min(1).values
    inside = (grid[:, 0] > X[:, 0].min()) & (grid[:, 0] < X[:, 0].max())
    regions = {"far": dist > 1.5, "between": (dist > 0.3) & (dist < 1.5) & inside}
    steps = sizes["epochs"] * (len(X) // MOONS["batch"])
    runs = {"adam": ("adam", {"lr": MOONS["adam_lr"]})}
    for h0 in MOONS["hess_inits"]:
        runs[f"von_h0={h0:g}"] = ("von", {"lr": MOONS["von_lr"], "hess_init": h0,
                                          "beta": MOONS["forget"] / steps})  # fmt: skip
    scores, pictures = {}, {}
    for key, (name, hp) in runs.items():
        torch.manual_seed(seed)
        net = _mlp([2, 32, 32, 2], device)
        hp = dict(hp, generator=torch.Generator(device=device).manual_seed(seed))
        opt = fit(
            name,
            net,
            X,
            y,
            epochs=sizes["epochs"],
            batch=MOONS["batch"],
            prior_prec=1.0,
            hp=hp,
            gen=torch.Generator(device=device).manual_seed(seed),
        )
        probs = _predict_all(name, net, opt, {"grid": grid, "train": X}, 64)
        h = entropy(probs["grid"])
        scores[key] = {
            "train_accuracy": metrics.accuracy(probs["train"], y),
            **{f"entropy_{k}": float(h[m].mean()) for k, m in regions.items()},
        }
        if name == "von":
            scores[key]["precisions"] = _layer_precisions(net, opt)
        if picture:
            pictures[key] = h.reshape(sizes["n_grid"], sizes["n_grid"]).tolist()
    picture_data = {"x": xs.tolist(), "y": ys.tolist(), "X": X.tolist(), "labels": y.tolist()}
    return scores, {**picture_data, "entropy": pictures} if picture else None


@register
def optim_moons(
    *, scale: Scale, device: torch.device, seed: int = 0, n_seeds: int | None = None
) -> dict[str, Any]:
    """Two moons: Adam's and VON's predictive entropy near and far from the data.

    VON runs from two initial h (``MOONS["hess_inits"]``); "far" are grid points at distance
    > 1.5 from every training point, "between" those at distance in (0.3, 1.5) whose
    horizontal position lies inside the data (the gaps around and between the moons).
    Sizes: ci, 200 points and 300 epochs on 1 seed; full, 1000 points and 1000 epochs on 5.

    Returns:
        ``per_seed`` scores (entropies, training accuracy and, for VON, the per-layer
        geometric-mean precision), ``summary`` (mean and sd over seeds), ``ratio`` (VON's
        entropy over Adam's per region, run and seed) and the first seed's ``picture``.
    """
    scale = protocol.as_scale(scale)
    sizes = _moons_sizes(scale)
    seeds = protocol.seeds(scale, base=seed, n_seeds=n_seeds, ci=1, full=5)
    per_seed: dict[str, list[dict[str, Any]]] = {}
    picture = None
    for s in seeds:
        scores, pic = _moons_seed(s, sizes, device, picture=picture is None)
        picture = picture or pic
        for key, row in scores.items():
            per_seed.setdefault(key, []).append(row)
    ratio = {key: {r: [v[f"entropy_{r}"] / a[f"entropy_{r}"]
                       for v, a in zip(rows, per_seed["adam"], strict=True)]
                   for r in ("far", "between")}
             for key, rows in per_seed.items() if key != "adam"}  # fmt: skip
    summary = {
        key: protocol.summarise_runs(
            [{k: v for k, v in r.items() if k != "precisions"} for r in rows]
        )
        for key, rows in per_seed.items()
    }
    return {"seeds": seeds, "sizes": sizes, "settings": MOONS, "per_seed": per_seed,
            "summary": summary, "ratio": ratio, "picture": picture}  # fmt: skip


@register
def optim_sharp_flat_2d(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Fig 1(b) in 2-D: from a grid of starts Adam stops in the nearest minimum, VON in the flat.

    The loss is ``landscapes.SharpFlat`` summed over the two coordinates (N = 1); every start is
    one row of a single (S, 2) parameter, so that one optimizer runs all of them at once.
    """
    from blrlib.landscapes import SharpFlat

    loss_fn, n_side = SharpFlat(), (12 if scale is Scale.CI else 64)
    side = torch.linspace(-2.0, 5.0, n_side, dtype=F64, device=device)
    starts = torch.cartesian_prod(side, side)
    ends = {}
    for name in ("adam", "von"):
        theta = nn.Parameter(starts.clone())
        if name == "adam":
            opt: Any = torch.optim.Adam([theta], lr=0.02)
        else:
            gen = torch.Generator(device=device).manual_seed(seed)
            opt = optim.VON([theta], n_data=1, lr=0.05, beta=0.02, gamma=0.9, prior_prec=1e-6,
                            hess_init=1.0, generator=gen)  # fmt: skip
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 1000)
        for _ in range(1000):
            opt.zero_grad()
            if name == "adam":
                loss_fn(theta).sum().backward()
            else:
                with opt.sampled_params(train=True):
                    loss_fn(theta).sum().backward()
            opt.step()
            sched.step()
        ends[name] = theta.detach()
    sharp, flat = loss_fn.centres
    frac = {k: float(((v - flat).abs() < 0.75).double().mean()) for k, v in ends.items()}
    return {"starts": starts.tolist(), **{f"{k}_end": v.tolist() for k, v in ends.items()},
            "fraction_flat": frac, "sharp": sharp, "flat": flat}  # fmt: skip
