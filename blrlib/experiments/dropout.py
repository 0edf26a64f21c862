"""Sec 4.3 at work: what App G's approximations cost, and a learned dropout rate.

    from blrlib import experiments
    record = experiments.run("dropout_approximations", scale="ci")
    record["result"]["rows"][0]["mean_error"]   # Eq 42-43 against the exact step

``dropout_approximations`` measures one exact spike-and-slab step against Eq 42-43 on a model
small enough for quadrature, and the error of the "far apart" entropy that Gal & Ghahramani
(2016) use, for their equal-width components and for the BLR's narrow spike.
``dropout_learn_rate`` learns pi1 per layer (``optim.ConcreteDropout``) and compares it with a
fixed pi1 chosen on a validation split. The comparisons with MC dropout and VON are in
``dropout_uq``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from blrlib import dropout as approx
from blrlib import families, metrics, optim
from blrlib.experiments import dropout_uq, protocol
from blrlib.experiments._registry import Scale, register
from blrlib.experiments.deep import _mlp

__all__ = ["dropout_approximations", "dropout_learn_rate"]

F64 = torch.float64
METHODS = ("fixed", "learned")


def _unit_lam(q: families.SpikeSlab, m: float, prec: float):
    """Slab means +-m (alternating over units, per coordinate) and precision prec I."""
    j, p = q.n_units, q.unit_dim
    sign = torch.tensor([(-1.0) ** k for k in range(j)], dtype=F64)
    means = m * sign[:, None] * torch.ones(j, p, dtype=F64)
    return q.natural_from_moments(means, prec * torch.eye(p, dtype=F64).repeat(j, 1, 1))


@register
def dropout_approximations(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """One exact spike-and-slab step against Eq 42-43, over s0 and the distance of m from 0;
    and the error of the far-apart entropy (``dropout.entropy_gap``).

    ``rows``: a logistic regression with two inputs (units, P = 1), slab precision 4 (sd 0.5)
    and pi1 = 0.8; the loss-term (Eq 84) and entropy-term (Eq 85-86) errors are reported
    separately and together. ``gap``: E_q[H(r)] per unit (nats, Monte Carlo with its standard
    error) for Gal & Ghahramani's equal-width components (s0 = S) as the unit's width P grows,
    with |m_i| one slab sd per coordinate, and for the BLR's spike (P = 1) as s0 grows.
    """
    del device  # quadrature and sampling on the CPU
    x = torch.tensor([[1.0, 0.5], [-0.3, 1.2], [0.8, -1.0], [-1.1, -0.4]], dtype=F64)
    y = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=F64)

    def loss(theta: Tensor) -> Tensor:
        margin = -y * (x @ theta)
        return nn.functional.softplus(margin).sum() + 0.5 * (theta * theta).sum()

    step = protocol.by_scale(scale, ci=2, full=1)
    s0s = [10.0**k for k in range(-4, 11, step)]
    means = protocol.by_scale(scale, ci=[0.05, 0.5, 2.0], full=[0.05, 0.25, 0.5, 1.0, 2.0])
    rows = []
    for m in means:
        for s0 in s0s:
            q = families.SpikeSlab(0.8, s0, n_units=2, unit_dim=1, dtype=F64)
            cost = approx.approximation_cost(q, _unit_lam(q, m, 4.0), loss, rho=0.5)
            rows.append({"m": m, "s0": s0, **cost})
    gen = torch.Generator().manual_seed(seed)
    n_mc = protocol.by_scale(scale, ci=20_000, full=200_000)
    gap = []
    for kind, width, s0 in [*[("gal", p, 4.0) for p in (1, 4, 16, 64)],
                            *[("blr", 1, s) for s in (4.0, 1e2, 1e4, 1e6, 1e8)]]:  # fmt: skip
        q = families.SpikeSlab(0.8, s0, n_units=1, unit_dim=width, dtype=F64)
        est, se = approx.entropy_gap(q, _unit_lam(q, 0.5, 4.0), n_samples=n_mc, generator=gen)
        gap.append({"candidate": kind, "P": width, "s0": s0, "gap": float(est[0]),
                    "se": float(se[0])})  # fmt: skip
    return {"slab_sd": 0.5, "pi1": 0.8, "rows": rows, "gap": gap}


def _learn_fit(X, y, *, setting, hidden, n_steps, noise_prec, seed, device):
    """AdamLike with dropout on the two hidden layers' units, each layer its own group (pi1
    fixed, or a ConcreteDropout); returns the network, the optimizer and the trace of logit
    pi1 per layer (every step)."""
    torch.manual_seed(seed)
    net = _mlp([1, hidden, hidden, 1], device)
    rest = [*net[0].parameters(), net[2].bias, net[4].bias]
    groups = [{"params": rest}] + [{"params": [net[i].weight], "dropout": setting} for i in (2, 4)]
    gen = torch.Generator(device=device).manual_seed(seed)
    opt = optim.AdamLike(groups, n_data=len(X), lr=LEARN_LR, generator=gen)
    trace = torch.empty(n_steps, 2, dtype=F64)
    for t in range(n_steps):
        opt.zero_grad()
        with opt.sampled_params(train=True):
            (0.5 * noise_prec * (net(X)[:, 0] - y) ** 2).mean().backward()
        opt.step()
        trace[t] = torch.tensor([_logit(g) for g in opt.param_groups[1:]])
    return net, opt, trace


def _logit(group: dict[str, Any]) -> float:
    if "dropout_logit" in group:
        return group["dropout_logit"]
    pi1 = group["dropout"]
    return math.log(pi1) - math.log1p(-pi1) if pi1 < 1 else math.inf


@torch.no_grad()
def _masks_predictive(net, opt, x: Tensor, n_samples: int) -> tuple[Tensor, Tensor]:
    """Mean and variance of f over dropout masks at the slab means (z * m)."""
    draws = []
    for _ in range(n_samples):
        with opt.sampled_params(train=False, noise=False):
            draws.append(net(x)[:, 0])
    f = torch.stack(draws)
    return f.mean(0), f.var(0, correction=0)


LEARN_LR = 1e-2  # Adam's rate of the means, the same for every setting


def _learn_sizes(scale: Scale) -> dict[str, Any]:
    return protocol.by_scale(
        scale,
        ci=dict(sizes=[40, 400], hidden=32, steps=400, n_pred=50,
                fixed=[0.9, 0.99], starts=[0.5, 0.95]),
        full=dict(sizes=[40, 400, 2000], hidden=32, steps=2000, n_pred=200,
                  fixed=[0.7, 0.9, 0.97, 0.995], starts=[0.3, 0.6, 0.9, 0.99]),
    )  # fmt: skip


@register
def dropout_learn_rate(
    *, scale: Scale, device: torch.device, seed: int = 0, n_seeds: int | None = None
) -> dict[str, Any]:
    """A learned pi1 per layer against a fixed pi1 chosen on validation, per training-set size.

    y = sin(x) + x + eps with noise sd 1 and the gap, a 1-H-H-1 ReLU network, AdamLike with
    dropout on both hidden layers, each layer its own group. ``fixed``: pi1 from a grid;
    ``learned``: ``optim.ConcreteDropout`` (rho = 1e-2, one probe per layer) started from each
    value of a grid of the same size; both chosen by the validation NLL of the masks-only
    predictive (MC dropout at the slab means). Reported per size (``by_size``) and seed: test
    NLL and RMSE on 400 points, the learned logit(pi1) per layer averaged over the second half
    of training, its standard deviation there, the logits reached from every start, and the
    first seed's trace; ``summary`` has mean and sd over seeds at the smallest and the largest
    size (keys that do not depend on the scale).
    """
    size, noise = _learn_sizes(scale), 1.0
    noise_prec = 1 / noise**2
    by_size: list[dict[str, Any]] = [
        {"n": n, "fixed": [], "learned": [], "trace": []} for n in size["sizes"]
    ]
    for s in protocol.seeds(scale, base=seed, n_seeds=n_seeds, ci=1, full=5):
        x_test, y_test = dropout_uq._gap_data(400, s + 10, device, noise=noise)
        for entry in by_size:
            X, y = dropout_uq._gap_data(entry["n"], s, device, noise=noise)
            (X_tr, y_tr), (X_va, y_va) = protocol.train_val_split(X, y, val_fraction=0.25, seed=s)
            ends: list[list[float]] = []

            def objective(setting, X_tr=X_tr, y_tr=y_tr, X_va=X_va, y_va=y_va, ends=ends, s=s):
                pi1 = setting.get("pi1")
                if pi1 is None:  # learned, from the start setting["start"]
                    pi1 = optim.ConcreteDropout(setting["start"], lr=1e-2)
                fit = _learn_fit(X_tr, y_tr, setting=pi1, hidden=size["hidden"],
                                 n_steps=size["steps"], noise_prec=noise_prec, seed=s,
                                 device=device)  # fmt: skip
                if "start" in setting:
                    ends.append(fit[2][size["steps"] // 2 :].mean(0).tolist())
                mean, var = _masks_predictive(fit[0], fit[1], X_va, size["n_pred"])
                return metrics.gaussian_nll(mean, var + 1 / noise_prec, y_va), fit

            best = protocol.tune_all({
                "fixed": (objective, {"pi1": size["fixed"]}),
                "learned": (objective, {"start": size["starts"]}),
            })  # fmt: skip
            for name, tuned in best.items():  # the test split, once
                net, opt, trace = tuned.payload
                mean, var = _masks_predictive(net, opt, x_test, size["n_pred"])
                half = trace[size["steps"] // 2 :]
                entry[name].append({
                    "nll": metrics.gaussian_nll(mean, var + 1 / noise_prec, y_test),
                    "rmse": float(((mean - y_test) ** 2).mean().sqrt()),
                    "logit": half.mean(0).tolist(), "logit_sd": half.std(0).tolist(),
                    "tuned": tuned.as_dict(),
                    **({"logits_from_each_start": ends} if name == "learned" else {}),
                })  # fmt: skip
                if name == "learned" and s == seed:
                    entry["trace"] = trace[:: max(size["steps"] // 100, 1)].tolist()
    return {"sizes": size["sizes"], "by_size": by_size, "noise": noise,
            "summary": {"smallest": _learn_summary(by_size[0]),
                        "largest": _learn_summary(by_size[-1])},
            "trace_every": max(size["steps"] // 100, 1), "steps": size["steps"],
            "seeds": protocol.seeds(scale, base=seed, n_seeds=n_seeds)}  # fmt: skip


def _learn_summary(entry: dict[str, Any]) -> dict[str, Any]:
    """Mean and sd over seeds of one size's test NLLs, their paired difference, the logits."""
    fixed, learned = entry["fixed"], entry["learned"]
    out = {f"{k}_nll": protocol.summarise([r["nll"] for r in entry[k]]) for k in METHODS}
    out["learned_minus_fixed_nll"] = protocol.summarise(
        [a["nll"] - b["nll"] for a, b in zip(learned, fixed, strict=True)]
    )
    for layer in (0, 1):
        out[f"logit_layer{layer + 1}"] = protocol.summarise([r["logit"][layer] for r in learned])
    return out
