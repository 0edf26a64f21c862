"""Sec 4.5 at work: STE vs BayesBiNN on binary networks, on digits and in continual learning.

    from blrlib import experiments
    record = experiments.run("binary_digits", scale="ci")
    record["result"]["summary"]   # test scores of STE and BayesBiNN, each tuned on validation

``binary_digits``: a binary MLP (no biases,
BatchNorm without affine parameters) on scikit-learn's digits, STE (Adam + clip) against
BayesBiNN with the reference code's settings, both tuned on a validation split.
``binary_temperature``: what q is at three temperatures. ``binary_continual``: permuted digits,
the posterior of each task the prior of the next, against STE fine-tuning. The enumerable
problems, where every weight vector can be scored, are in ``binary_enumeration``.

The settings follow the reference code of Meng et al. (2020): lam starts at +-10 with a random
sign, tau = 1e-10 with the regularised scale s (eps = 1e-10, ``optim.BayesBiNN``'s default) for
single tasks and tau = 1e-2 for continual learning, one draw per step, batch 100, a cosine
schedule, BatchNorm with affine=False; STE is Adam on the gradient at sign(lam), latent weights
clipped to [-1, 1] and started Glorot-uniform. Every experiment follows
``experiments.protocol``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from blrlib import enumeration, metrics, optim
from blrlib.experiments import protocol
from blrlib.experiments._registry import Scale, register
from blrlib.optim.bayesbinn import undecided_fraction

__all__ = [
    "binary_continual",
    "binary_digits",
    "binary_mlp",
    "binary_temperature",
    "digits_split",
    "train",
]

UNDECIDED = 1.1
"""|lam| below which a weight counts as undecided: q(theta = +1) in (0.1, 0.9)."""

F32 = torch.float32
REFERENCE_LAM = 10.0
"""|lam| at the start of BayesBiNN, with a random sign (the reference code's lamda_init)."""
DIGITS_TAU = 1e-10
CONTINUAL_TAU = 1e-2
BATCH = 100
DIGITS_GRIDS: dict[str, dict[str, list[float]]] = {
    "ste": {"lr": [1e-2, 3e-2, 1e-1, 3e-1]},
    "bayesbinn": {"lr": [1e-3, 1e-2, 1e-1, 1.0]},
}
"""4 learning rates each. BayesBiNN at tau = 1e-10 is nearly insensitive to the scale of the
data term (s is about 1 / (1 - mu^2 + 1e-10), up to 1e10), so that its lr sets how fast lam
forgets old gradients (a memory of about 1 / lr steps): the reference's 1e-4 over 300k steps
is a memory of 1e4 steps; 1e-3 to 1 cover memories of a whole run to a single step (rho = 1
is the largest step the rule allows)."""
CONTINUAL_GRIDS: dict[str, dict[str, list[float]]] = {
    "ste": {"lr": [1e-4, 3e-4, 1e-3, 3e-3]},
    "bayesbinn": {"lr": [0.03, 0.1, 0.3, 1.0]},
}
"""4 learning rates each. STE's smallest trades learning each task for forgetting less;
BayesBiNN's largest, rho = 1, is the largest step the rule allows ((1 - rho) lam >= 0)."""
TEMPERATURE_LR = 0.1
"""The middle of the digits grid: with it, rho T >> 1 and lam forgets its +-10 start at every
temperature (at tau = 1e-2 the exact s of a weight at +-10 is tiny and lam decays at rate rho,
so a small lr would leave q at its start)."""


def digits_split(seed: int, device: torch.device, dtype: torch.dtype = F32) -> tuple:
    """scikit-learn's digits (1797 images, bundled) split by ``protocol.split``: a quarter for
    test, a fifth of the rest for validation, each class in every part; pixels / 16,
    standardised with the training part's mean and standard deviation (+ 0.1)."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = torch.as_tensor(X / 16.0, dtype=dtype), torch.as_tensor(y)
    tr, va, te = protocol.split(X, y, test_fraction=0.25, val_fraction=0.2, seed=seed)
    mean, std = tr[0].mean(0), tr[0].std(0) + 0.1
    return tuple((((a - mean) / std).to(device), b.to(device)) for a, b in (tr, va, te))


class _Scale(nn.Module):
    """A fixed (untrained) output temperature: BatchNorm leaves logits of unit variance."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return self.factor * x


def binary_mlp(
    sizes: list[int], *, init: str, device: torch.device, seed: int, dtype: torch.dtype = F32
) -> nn.Sequential:
    """Linear (no bias) + BatchNorm(affine=False, eps 1e-4, momentum 0.15) (+ ReLU) per layer,
    a fixed factor 4 on the logits; every trained parameter is a binary weight's latent lam.

    Args:
        sizes: widths, input first. init: ``"ste"`` (Glorot-uniform latent weights,
            +-sqrt(1.5 / (fan_in + fan_out)), as the reference STE) or ``"bayesbinn"``
            (lam = +-10 with a random sign). device, seed, dtype: of the weights.

    Raises:
        ValueError: an unknown ``init``.
    """
    if init not in ("ste", "bayesbinn"):
        raise ValueError(f"init must be 'ste' or 'bayesbinn'; got {init!r}")
    gen = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        lin = nn.Linear(a, b, bias=False, dtype=dtype)
        with torch.no_grad():
            if init == "ste":
                bound = math.sqrt(1.5 / (a + b))
                lin.weight.uniform_(-bound, bound, generator=gen)
            else:
                signs = 2.0 * torch.randint(0, 2, (b, a), generator=gen) - 1.0
                lin.weight.copy_(REFERENCE_LAM * signs)
        layers += [lin, nn.BatchNorm1d(b, affine=False, eps=1e-4, momentum=0.15, dtype=dtype)]
        layers.append(nn.ReLU() if i < len(sizes) - 2 else _Scale(4.0))
    return nn.Sequential(*layers).to(device)


def _make_opt(method: str, net: nn.Module, n: int, hp: dict[str, float], seed: int) -> Any:
    if method == "ste":
        return optim.STE(net.parameters(), lr=hp["lr"], beta=0.9, beta2=0.999)
    gen = torch.Generator(device=next(net.parameters()).device).manual_seed(seed)
    return optim.BayesBiNN(net.parameters(), n_data=n, lr=hp["lr"], tau=hp["tau"],
                           generator=gen)  # fmt: skip


def train(
    net: nn.Module, opt: Any, data: tuple[Tensor, Tensor], *, epochs: int, seed: int,
    val: tuple[Tensor, Tensor] | None = None,
) -> list[list[float]]:  # fmt: skip
    """Mini-batches of 100 with ``opt`` (STE or BayesBiNN), lr cosine-annealed to 0.

    Returns the validation curve, [NLL, accuracy] of the mode after each epoch (empty without
    ``val``).
    """
    X, y = data
    n = len(X)
    steps = n // BATCH
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps)
    gen = torch.Generator(device=X.device).manual_seed(seed)
    curve = []
    for _ in range(epochs):
        net.train()
        order = torch.randperm(n, generator=gen, device=X.device)
        for i in range(steps):
            idx = order[i * BATCH : (i + 1) * BATCH]
            opt.zero_grad()
            with opt.sampled_params(train=True):
                F.cross_entropy(net(X[idx]), y[idx]).backward()
            opt.step()
            sched.step()
        net.eval()
        if val is not None:
            p = optim.predict(net, opt, val[0], n_samples=0)
            curve.append([metrics.nll(p, val[1]), metrics.accuracy(p, val[1])])
    return curve


def _scores(probs: Tensor, y: Tensor) -> dict[str, float]:
    """Accuracy, NLL, ECE and the mean confidence (largest probability): a confidence below
    the accuracy is under-confidence."""
    return {"accuracy": metrics.accuracy(probs, y), "nll": metrics.nll(probs, y),
            "ece": metrics.ece(probs, y),
            "confidence": float(probs.max(-1).values.mean())}  # fmt: skip


def _q_stats(net: nn.Module, X: Tensor) -> dict[str, float]:
    """Undecided fraction (|lam| < 1.1), mean entropy per weight (nats), median |lam|, and
    the fraction of weights that multiply an input constant over the training images ``X``
    (the data say nothing about them)."""
    ps = list(net.parameters())
    lam = torch.cat([p.detach().reshape(-1).double() for p in ps])
    dead = int((X.std(0) == 0).sum()) * ps[0].shape[0]
    return {
        "undecided": undecided_fraction([lam], threshold=UNDECIDED),
        "entropy_per_weight": float(enumeration.entropy(lam) / lam.numel()),
        "median_abs_lam": float(lam.abs().median()),
        "constant_input_weights": dead / lam.numel(),
    }


def _digits_sizes(scale: Scale) -> dict[str, Any]:
    return protocol.by_scale(
        scale,
        ci=dict(hidden=[128], epochs=30, draws=[1, 4, 16]),
        full=dict(hidden=[256, 256], epochs=200, draws=[1, 4, 16, 64]),
    )


def _fit_digits(method: str, hp: dict[str, float], data: tuple, sizes: dict, seed: int,
                device: torch.device) -> tuple[nn.Module, Any, list[list[float]]]:  # fmt: skip
    tr, va, _ = data
    net = binary_mlp([64, *sizes["hidden"], 10], init=method, device=device, seed=seed)
    opt = _make_opt(method, net, len(tr[0]), hp, seed)
    curve = train(net, opt, tr, epochs=sizes["epochs"], seed=seed, val=va)
    return net, opt, curve


def _digits_seed(s: int, sizes: dict, device: torch.device) -> dict[str, Any]:
    """One seed of ``binary_digits``: tune both methods on validation, score once on test."""
    data = digits_split(s, device)
    va, te = data[1], data[2]

    def objective(method: str) -> Any:
        def score(hp: dict[str, float]) -> tuple[float, Any]:
            fitted = _fit_digits(method, {"tau": DIGITS_TAU, **hp}, data, sizes, s, device)
            net, opt, _ = fitted
            return metrics.nll(optim.predict(net, opt, va[0], n_samples=0), va[1]), fitted

        return score

    tuned = protocol.tune_all({m: (objective(m), g) for m, g in DIGITS_GRIDS.items()})
    ste, ste_opt, ste_curve = tuned["ste"].payload
    bb, bb_opt, bb_curve = tuned["bayesbinn"].payload
    k = sizes["draws"][-1]
    return {
        "ste": _scores(optim.predict(ste, ste_opt, te[0], n_samples=0), te[1]),
        "bayesbinn_mode": _scores(optim.predict(bb, bb_opt, te[0], n_samples=0), te[1]),
        "bayesbinn_predictive": _scores(optim.predict(bb, bb_opt, te[0], n_samples=k), te[1]),
        "tuning": {m: t.as_dict() for m, t in tuned.items()},
        "curves": {"ste": ste_curve, "bayesbinn": bb_curve},
        "q": _q_stats(bb, data[0][0]),
        "draws": {str(n): metrics.nll(optim.predict(bb, bb_opt, va[0], n_samples=n), va[1])
                  for n in [0, *sizes["draws"]]},
    }  # fmt: skip


@register
def binary_digits(
    *, scale: Scale, device: torch.device, seed: int = 0, n_seeds: int | None = None
) -> dict[str, Any]:
    """STE (Adam + clip) against BayesBiNN (tau = 1e-10, lam_0 = +-10) on digits.

    Each method's lr comes from a grid of 4 (``DIGITS_GRIDS``) by the validation NLL of its
    binary network (sign(lam)); the winner is scored once on test: STE and BayesBiNN's mode,
    and BayesBiNN's posterior predictive (probabilities averaged over binary draws). Also:
    the validation curves of the winners, the state of q (undecided fraction, entropy per
    weight, median |lam|) and the predictive's validation NLL against the number of draws
    ("0" is the mode). Seeds: 1 at ci, 5 at full scale; claims rest on paired differences.
    """
    sizes = _digits_sizes(scale)
    seeds = protocol.seeds(scale, base=seed, n_seeds=n_seeds, ci=1, full=5)
    per_seed = [_digits_seed(s, sizes, device) for s in seeds]
    methods = ("ste", "bayesbinn_mode", "bayesbinn_predictive")
    runs = {m: [r[m] for r in per_seed] for m in methods}
    pairs = {
        f"{a}-{b}:{k}": protocol.paired_difference([r[k] for r in runs[a]],
                                                   [r[k] for r in runs[b]])
        for a, b in (("bayesbinn_mode", "ste"), ("bayesbinn_predictive", "bayesbinn_mode"))
        for k in ("accuracy", "nll")
    }  # fmt: skip
    return {
        "seeds": seeds, "hidden": sizes["hidden"], "epochs": sizes["epochs"],
        "draws": sizes["draws"][-1], "grids": DIGITS_GRIDS, "tau": DIGITS_TAU,
        "metrics": {m: protocol.summarise_runs(r) for m, r in runs.items()}, "paired": pairs,
        **{k: [r[k] for r in per_seed] for k in ("tuning", "curves", "q", "draws")},
        "per_seed": runs,
    }  # fmt: skip


@register
def binary_temperature(
    *, scale: Scale, device: torch.device, seed: int = 0, n_seeds: int | None = None
) -> dict[str, Any]:
    """What BayesBiNN's q is at tau = 1e-10 and 1e-2 (and 1e-1 at full scale); lr 0.1,
    lam_0 = +-10, digits.

    A diagnosis, not a comparison (nothing is chosen, so no grid): per temperature, the
    state of q (undecided fraction, entropy per weight, median |lam|), the validation scores
    of its mode and of its posterior predictive, the predictive's validation NLL against the
    number of draws, and the validation curve.
    """
    sizes = _digits_sizes(scale)
    k = sizes["draws"][-1]
    temperatures = protocol.by_scale(scale, ci=[1e-10, 1e-2], full=[1e-10, 1e-2, 1e-1])
    out: dict[str, list[dict[str, Any]]] = {str(t): [] for t in temperatures}
    seeds = protocol.seeds(scale, base=seed, n_seeds=n_seeds, ci=1, full=5)
    for s in seeds:
        data = digits_split(s, device)
        va = data[1]
        for tau in temperatures:
            hp = {"lr": TEMPERATURE_LR, "tau": tau}
            net, opt, curve = _fit_digits("bayesbinn", hp, data, sizes, s, device)
            mode = _scores(optim.predict(net, opt, va[0], n_samples=0), va[1])
            pred = _scores(optim.predict(net, opt, va[0], n_samples=k), va[1])
            draws = {str(n): metrics.nll(optim.predict(net, opt, va[0], n_samples=n), va[1])
                     for n in sizes["draws"]}  # fmt: skip
            out[str(tau)].append({**_q_stats(net, data[0][0]), "mode": mode, "predictive": pred,
                                  "draws": draws, "curve": curve})  # fmt: skip
    return {"seeds": seeds, "lr": TEMPERATURE_LR, "draws": k, "temperatures": out}


def _continual_sizes(scale: Scale) -> dict[str, Any]:
    return protocol.by_scale(
        scale,
        ci=dict(tasks=3, hidden=[100], epochs=8, draws=16),
        full=dict(tasks=5, hidden=[100, 100], epochs=60, draws=64),
    )


def _run_tasks(method: str, hp: dict[str, float], data: tuple, perms: list[Tensor],
               sizes: dict, seed: int, device: torch.device) -> tuple[float, Any]:  # fmt: skip
    """Train on the tasks in turn; score = 1 - mean validation accuracy of the mode over all
    tasks after the last; payload = the network and optimizer after each task."""
    tr, va, _ = data
    net = binary_mlp([64, *sizes["hidden"], 10], init=method, device=device, seed=seed)
    opt = _make_opt(method, net, len(tr[0]), {"tau": CONTINUAL_TAU, **hp}, seed)
    snapshots = []
    for t, perm in enumerate(perms):
        if t > 0 and method == "bayesbinn":
            opt.posterior_as_prior()
        for group in opt.param_groups:  # a fresh cosine cycle per task
            group["lr"] = group.get("initial_lr", group["lr"])
        train(net, opt, (tr[0][:, perm], tr[1]), epochs=sizes["epochs"], seed=seed + t)
        snapshots.append(copy.deepcopy(net.state_dict()))
    acc = [metrics.accuracy(optim.predict(net, opt, va[0][:, p], n_samples=0), va[1])
           for p in perms]  # fmt: skip
    return 1.0 - sum(acc) / len(acc), snapshots


def _restore(method: str, state: dict, sizes: dict, seed: int, device: torch.device) -> tuple:
    """A network with a snapshot's lam and BatchNorm statistics, and an optimizer to draw
    its binary weights (prediction only: its lr and N are never used)."""
    net = binary_mlp([64, *sizes["hidden"], 10], init=method, device=device, seed=seed)
    net.load_state_dict(state)
    net.eval()
    return net, _make_opt(method, net, 1, {"lr": 1.0, "tau": CONTINUAL_TAU}, seed)


def _continual_seed(s: int, sizes: dict, device: torch.device) -> dict[str, Any]:
    """One seed of ``binary_continual``: tune on validation, then the test accuracy matrix."""
    data = digits_split(s, device)
    te = data[2]
    g = torch.Generator().manual_seed(s)
    perms = [torch.arange(64)] + [torch.randperm(64, generator=g)
                                  for _ in range(sizes["tasks"] - 1)]  # fmt: skip
    tuned = protocol.tune_all({
        m: (lambda hp, m=m: _run_tasks(m, hp, data, perms, sizes, s, device), grid)
        for m, grid in CONTINUAL_GRIDS.items()
    })  # fmt: skip
    row: dict[str, Any] = {"tuning": {m: t.as_dict() for m, t in tuned.items()}}
    last: dict[str, tuple] = {}
    for m, t in tuned.items():
        nets = [_restore(m, state, sizes, s, device) for state in t.payload]
        acc = [[metrics.accuracy(optim.predict(net, opt, te[0][:, p], n_samples=0), te[1])
                for p in perms] for net, opt in nets]  # fmt: skip
        row[m] = {"accuracy": acc, "average_after_last": sum(acc[-1]) / len(perms)}
        last[m] = nets[-1]
    first, _ = _restore("bayesbinn", tuned["bayesbinn"].payload[0], sizes, s, device)
    row["q_after_first_task"] = _q_stats(first, data[0][0])
    net, opt = last["bayesbinn"]
    k = sizes["draws"]
    pred = [metrics.accuracy(optim.predict(net, opt, te[0][:, p], n_samples=k), te[1])
            for p in perms]  # fmt: skip
    row["bayesbinn_predictive"] = {"after_last": pred, "average_after_last": sum(pred) / len(pred)}
    return row


@register
def binary_continual(
    *, scale: Scale, device: torch.device, seed: int = 0, n_seeds: int | None = None
) -> dict[str, Any]:
    """Permuted digits (task 0 the identity): BayesBiNN (tau = 1e-2, lam_0 = +-10) with the
    posterior of task t as the prior of task t + 1, against STE (Adam + clip) fine-tuning.

    Each method's lr comes from a grid of 4 (``CONTINUAL_GRIDS``) by the mean validation
    accuracy over all tasks after the last. Test: the accuracy matrix acc[t][k] (task k after
    training on task t) of STE and of BayesBiNN's mode, and BayesBiNN's predictive after the
    last task; the average over tasks after the last. Seeds: 1 at ci, 5 at full scale.
    """
    sizes = _continual_sizes(scale)
    seeds = protocol.seeds(scale, base=seed, n_seeds=n_seeds, ci=1, full=5)
    per_seed = [_continual_seed(s, sizes, device) for s in seeds]
    names = ("ste", "bayesbinn", "bayesbinn_predictive")
    avg = {m: protocol.summarise([r[m]["average_after_last"] for r in per_seed]) for m in names}
    pairs = {
        f"{m}-ste": protocol.paired_difference(
            [r[m]["average_after_last"] for r in per_seed],
            [r["ste"]["average_after_last"] for r in per_seed])
        for m in ("bayesbinn", "bayesbinn_predictive")
    }  # fmt: skip
    return {"seeds": seeds, "n_tasks": sizes["tasks"], "hidden": sizes["hidden"],
            "epochs": sizes["epochs"], "tau": CONTINUAL_TAU, "grids": CONTINUAL_GRIDS,
            "average_after_last": avg, "paired": pairs, "per_seed": per_seed}  # fmt: skip
