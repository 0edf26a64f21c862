"""Sec 4.5 on problems small enough to enumerate: STE vs BayesBiNN against the exact answers.

    from blrlib import experiments
    record = experiments.run("binary_enumeration", scale="ci")
    record["result"]["global_optimum"]   # how many of 20 data sets reach the optimum of Eq 47

Binary linear classifiers with P weights (12 at ci, 16 at full scale) on 20 generated data
sets, where all 2^P weight vectors are scored (``blrlib.enumeration``): the optimum of Eq 47,
the exact posterior and its marginals, and the best mean-field Bernoulli q; hyperparameters are
tuned on 20 other data sets.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from blrlib import blr, enumeration, families, optim
from blrlib.experiments import protocol
from blrlib.experiments._registry import Scale, register

__all__ = ["ENUM", "ENUM_GRIDS", "binary_enumeration"]

F64 = torch.float64
ENUM = dict(n=30, scale=3.0, samples=64, sets=20, tune_offset=1000)
"""30 points per data set, logit scale 3, 64 draws from q, 20 evaluation and 20 tuning data
sets (seeds seed + 1000 + i: disjoint from the evaluation seeds seed + i)."""
ENUM_GRIDS: dict[str, list[dict[str, float]]] = {
    "ste": [{"lr": v} for v in (0.1, 0.3, 1.0, 3.0, 10.0)],
    "bayesbinn": [{"lr": 0.03, "tau": 0.3}]
    + [{"lr": a, "tau": 0.3} for a in (0.01, 0.1)]
    + [{"lr": 0.03, "tau": t} for t in (0.1, 1.0)],
}
"""5 settings each: STE's lr on a log grid (with latent weights clipped to [-1, 1], a step of
lr |g| > 2 flips a weight whatever its latent value, so large lr is sign descent while the
cosine schedule is high); BayesBiNN's (lr, tau) a star around (0.03, 0.3)."""


def _enum_data(seeds: list[int], dim: int) -> tuple[Tensor, Tensor]:
    """x ~ N(0, I) with the second half of the features correlated with the first, and labels
    from a binary teacher, y ~ Bernoulli(sigmoid(c w* . x / sqrt(P))); (S, n, P) and (S, n)."""
    Xs, ys = [], []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        teacher = torch.where(torch.rand(dim, generator=g, dtype=F64) < 0.5, -1.0, 1.0).to(F64)
        X = torch.randn(int(ENUM["n"]), dim, generator=g, dtype=F64)
        half = dim // 2
        X[:, half : 2 * half] = 0.7 * X[:, :half] + 0.7 * X[:, half : 2 * half]
        logits = ENUM["scale"] * X @ teacher / math.sqrt(dim)
        Xs.append(X)
        ys.append(torch.bernoulli(torch.sigmoid(logits), generator=g))
    return torch.stack(Xs), torch.stack(ys)


def _tables(X: Tensor, y: Tensor, thetas: Tensor) -> Tensor:
    """bar-ell(theta) = sum_i BCE for every data set and sign vector: (S, 2^P)."""
    P = X.shape[-1]
    rows = []
    for Xs, ys in zip(X, y, strict=True):

        def loss(th: Tensor, Xs: Tensor = Xs, ys: Tensor = ys) -> Tensor:
            logits = ENUM["scale"] * Xs @ th / math.sqrt(P)
            return F.binary_cross_entropy_with_logits(logits, ys, reduction="sum")

        rows.append(enumeration.loss_table(loss, thetas))
    return torch.stack(rows)


def _fit_sets(
    method: str, X: Tensor, y: Tensor, settings: list[dict[str, float]], *, steps: int,
    seed: int,
) -> list[Tensor]:  # fmt: skip
    """Train one latent vector per data set and setting at once, full batch, cosine lr.

    Each setting is a parameter group holding an (S, P) tensor (the rows' losses are
    independent), all started from the same lam ~ 0.1 N(0, 1); returns lam per setting.
    """
    S, n, P = X.shape
    init = 0.1 * torch.randn(S, P, generator=torch.Generator().manual_seed(seed), dtype=F64)
    lams = [nn.Parameter(init.clone()) for _ in settings]
    groups = [{"params": [lam], **hp} for lam, hp in zip(lams, settings, strict=True)]
    if method == "ste":
        opt: Any = optim.STE(groups)
    else:
        gen = torch.Generator().manual_seed(seed + 1)
        opt = optim.BayesBiNN(groups, n_data=n, generator=gen)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        opt.zero_grad()
        with opt.sampled_params(train=True):
            total = 0.0
            for lam in lams:
                logits = ENUM["scale"] * torch.einsum("snp,sp->sn", X, lam) / math.sqrt(P)
                bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
                total = total + bce.mean(1).sum()
            total.backward()
        opt.step()
        sched.step()
    return [lam.detach() for lam in lams]


def _index(signs: Tensor) -> Tensor:
    """Row of each sign vector in ``enumeration.sign_vectors`` (binary-counting order)."""
    P = signs.shape[-1]
    return ((signs > 0).long() * (2 ** torch.arange(P - 1, -1, -1))).sum(-1)


def _mode_excess(L: Tensor, lam: Tensor) -> Tensor:
    """bar-ell(sign(lam)) - min bar-ell per data set (sign(0) = +1)."""
    rows = torch.arange(len(L))
    return L[rows, _index(torch.where(lam >= 0, 1.0, -1.0))] - L.min(1).values


def _mean_field(L: Tensor, thetas: Tensor, lam0: Tensor, *, steps: int) -> tuple[Tensor, float]:
    """The exact mean-field BLR (the natural gradient by enumeration, rho = 0.5) from lam0,
    all data sets at once; returns lam and the largest change of any data set's Bayes
    objective over the last 10 steps (how far from a fixed point the run stopped)."""
    S, P = lam0.shape
    q = families.SignBernoulli(S * P, dtype=F64)

    def total(mu: tuple[Tensor, ...]) -> Tensor:
        return enumeration.expected_loss(mu[0].view(S, P), thetas, L).sum()

    path = blr.run(q, (lam0.reshape(-1).clone(),), rho=0.5, n_steps=steps, estimator="exact",
                   expected_loss=total)  # fmt: skip
    lam, before = path[-1][0].view(S, P), path[-11][0].view(S, P)
    change = enumeration.bayes_objective(lam, thetas, L) - enumeration.bayes_objective(
        before, thetas, L
    )
    return lam, float(change.abs().max())


def _tuned_enum(X: Tensor, y: Tensor, L: Tensor, steps: int, seed: int) -> dict[str, Any]:
    """protocol.tune_all on the tuning data sets: score = mean excess loss of the mode."""
    scores: dict[str, dict[str, float]] = {}
    for method, grid in ENUM_GRIDS.items():
        lams = _fit_sets(method, X, y, grid, steps=steps, seed=seed)
        scores[method] = {repr(hp): float(_mode_excess(L, lam).mean())
                          for hp, lam in zip(grid, lams, strict=True)}  # fmt: skip
    return protocol.tune_all({
        m: (lambda hp, m=m: scores[m][repr(hp)], grid) for m, grid in ENUM_GRIDS.items()
    })  # fmt: skip


@register
def binary_enumeration(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Eq 47's optimum and the exact posterior, by enumeration, against STE and BayesBiNN.

    STE's lr and BayesBiNN's (lr, tau) are chosen by ``protocol.tune_all`` (5 settings each)
    on 20 tuning data sets, by the mean excess loss of sign(lam). On 20 other data sets: the
    excess loss bar-ell(theta) - min bar-ell of STE's sign(lam), of BayesBiNN's mode and of the
    best of 64 draws from its q (without the mode); the exact posterior marginals against
    BayesBiNN's sigmoid(2 lam) and against the exact mean-field BLR (the natural gradient by
    enumeration, rho = 0.5, from lam = 0 and from BayesBiNN's lam), with the Bayes objective
    E_q[bar-ell] - H(q) of each q. Runs on the CPU (the tables are small); ``device`` is unused.
    """
    del device
    dim = protocol.by_scale(scale, ci=12, full=16)
    steps = protocol.by_scale(scale, ci=300, full=1000)
    mf_steps = protocol.by_scale(scale, ci=100, full=200)
    thetas = enumeration.sign_vectors(dim, dtype=F64)
    sets = int(ENUM["sets"])
    tune_seeds = [seed + int(ENUM["tune_offset"]) + i for i in range(sets)]
    Xt, yt = _enum_data(tune_seeds, dim)
    tuned = _tuned_enum(Xt, yt, _tables(Xt, yt, thetas), steps, seed)
    seeds = [seed + i for i in range(sets)]
    X, y = _enum_data(seeds, dim)
    L = _tables(X, y, thetas)
    lam = {m: _fit_sets(m, X, y, [t.best], steps=steps, seed=seed)[0] for m, t in tuned.items()}
    excess = {m: _mode_excess(L, v) for m, v in lam.items()}
    q = families.SignBernoulli(dim, dtype=F64)
    gen = torch.Generator().manual_seed(seed)
    draws = torch.stack([q.sample((v,), int(ENUM["samples"]), generator=gen)
                         for v in lam["bayesbinn"]])  # fmt: skip
    excess["bayesbinn_draws"] = L.gather(1, _index(draws)).min(1).values - L.min(1).values
    exact = torch.stack([enumeration.marginals(thetas, enumeration.posterior(t)) for t in L])
    zero = torch.zeros_like(lam["bayesbinn"])
    mf0, moved0 = _mean_field(L, thetas, zero, steps=mf_steps)
    # |lam| <= 10 (q(theta = +-1) >= 1 - 2e-9): beyond ~19, tanh(lam) = +-1 in float64
    start = lam["bayesbinn"].clamp(-10.0, 10.0)
    mfb, movedb = _mean_field(L, thetas, start, steps=mf_steps)
    qs = {"bayesbinn": lam["bayesbinn"], "mean_field_from_0": mf0,
          "mean_field_from_bayesbinn": mfb}  # fmt: skip
    objective = {m: enumeration.bayes_objective(v, thetas, L) for m, v in qs.items()}
    tol = 1e-9
    d, s = excess["bayesbinn_draws"], excess["ste"]
    return {
        "dim": dim, "seeds": seeds, "tuning_seeds": tune_seeds, "steps": steps,
        "tuning": {m: t.as_dict() for m, t in tuned.items()},
        "global_optimum": {m: int((e < tol).sum()) for m, e in excess.items()},
        "excess_loss": {m: e.tolist() for m, e in excess.items()},
        "mean_excess_loss": {m: float(e.mean()) for m, e in excess.items()},
        "draws_vs_ste": {"better": int((d < s - tol).sum()), "worse": int((d > s + tol).sum()),
                         "tied": int(((d - s).abs() <= tol).sum())},
        "marginal_error": {m: float((torch.sigmoid(2 * v) - exact).abs().mean())
                           for m, v in qs.items()},
        "objective": {m: float(objective[m].mean()) for m in qs},
        "objective_per_set": {m: objective[m].tolist() for m in qs},
        "mean_field_starts_differ": int(
            ((objective["mean_field_from_bayesbinn"] - objective["mean_field_from_0"]).abs()
             > 1e-3).sum()),
        "exact_objective": float(-torch.logsumexp(-L, 1).mean()),
        "confidence": {"exact": float((2 * exact - 1).abs().mean()),
                       **{m: float(torch.tanh(v).abs().mean()) for m, v in qs.items()}},
        "mean_field_objective_change": {"from_0": moved0, "from_bayesbinn": movedb},
        "marginals": {"exact": exact.tolist(),
                      **{m: torch.sigmoid(2 * v).tolist() for m, v in qs.items()}},
    }  # fmt: skip
