"""Fig 1 of Khan & Rue (2023): where ERM and the Bayes objective put their solutions.

    from blrlib.experiments.minima import run_bayes, run_gd
    from blrlib.landscapes import Wall
    starts = torch.linspace(-2.0, 1.0, 8)
    run_gd(Wall(), starts, lr=1e-2, n_steps=2000)       # every start ends at the ERM minimiser
    run_bayes(Wall(), starts, var0=0.1, rho=0.1, n_steps=400)[0]  # every mean ends left of it

Every run is vectorised over starting points: the landscapes are separable, so a diagonal
Gaussian over P coordinates is P independent 1-D candidates, and a fixed-covariance Gaussian is
P independent gradient-descent runs.
"""

from __future__ import annotations

from typing import Any

import torch

from blrlib import blr, families
from blrlib.experiments import protocol
from blrlib.experiments._registry import Scale, register
from blrlib.landscapes import SharpFlat, Wall, bayes_objective, best_gaussian, local_minima

__all__ = ["fig1_sharp_flat", "fig1_wall", "run_bayes", "run_gd", "run_newton"]


def run_gd(loss, starts: torch.Tensor, *, lr: float, n_steps: int) -> torch.Tensor:
    """Gradient descent from each start: the BLR with N(m, lr I) and the delta method (Eq 7, 35).

    The step is theta <- theta - lr grad bar-ell, i.e. S = 1 / lr and rho = 1 in Eq 35.
    """
    q = families.FixedCovGaussian(torch.full_like(starts, 1.0 / lr))
    lam = q.natural_from_moments(starts, torch.full_like(starts, 1.0 / lr))
    for _ in range(n_steps):
        lam = blr.step(q, lam, loss, rho=1.0, estimator="delta")
    return q.mean_cov(lam)[0]


def run_newton(loss, starts: torch.Tensor, *, n_steps: int) -> torch.Tensor:
    """Newton's method from each start: the BLR with N(m, S^-1), delta method, rho = 1 (Eq 12-13).

    The landscapes are separable, so the diagonal Gaussian's diagonal Hessian is the Hessian.
    """
    q = families.DiagGaussian(starts.numel(), dtype=starts.dtype, device=starts.device)
    lam = q.natural_from_moments(starts, torch.ones_like(starts))
    for _ in range(n_steps):
        lam = blr.step(q, lam, loss, rho=1.0, estimator="delta")
    return q.mean_cov(lam)[0]


def run_bayes(
    loss, starts: torch.Tensor, *, var0: float, rho: float, n_steps: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The BLR with a learned variance and exact expectations, from N(start, var0).

    Returns:
        Final means, final variances and the Bayes objective E_q[bar-ell] - H(q) of each run.
    """
    q = families.DiagGaussian(starts.numel(), dtype=starts.dtype, device=starts.device)
    lam = q.natural_from_moments(starts, torch.full_like(starts, 1.0 / var0))

    def expected_loss(mu):
        m, var = q.mean_cov_from_expectation(mu)
        return loss.expected(m, var)

    for _ in range(n_steps):
        lam = blr.step(q, lam, rho=rho, estimator="exact", expected_loss=expected_loss)
    m, var = q.mean_cov(lam)
    return m, var, bayes_objective(loss, m, var)  # one value per start


def _starts(lo: float, hi: float, scale: Scale, device: torch.device) -> torch.Tensor:
    """The starting points: 24 at ci scale, 4096 at full and gpu scale (one vectorised run)."""
    n = protocol.by_scale(scale, ci=24, full=4096)
    return torch.linspace(lo, hi, n, dtype=torch.float64, device=device)


def _references(loss, lo: float, hi: float, means: torch.Tensor) -> dict[str, Any]:
    """What the runs are checked against, computed without the BLR: the local minimisers of the
    loss on [lo, hi] (grid search, lowest first) and the best Gaussian on a grid of (m, var)."""
    variances = torch.logspace(-5.0, 1.0, 601, dtype=torch.float64)
    m, var, objective = best_gaussian(loss, means, variances)
    return {
        "local_minima": local_minima(loss, lo, hi).tolist(),
        "grid_best_gaussian": {"mean": m, "var": var, "objective": objective},
    }


def _summary(m: torch.Tensor, var: torch.Tensor, objective: torch.Tensor) -> dict[str, Any]:
    """Mean and sd over the starts of the BLR's end points (one deterministic run per start)."""
    stats = protocol.summarise_runs(
        [
            {"mean": a, "var": b, "objective": c}
            for a, b, c in zip(m.tolist(), var.tolist(), objective.tolist(), strict=True)
        ]
    )
    return {k: {"mean": v["mean"], "sd": v["sd"], "n": v["n"]} for k, v in stats.items()}


@register
def fig1_sharp_flat(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Fig 1(b): gradient descent stops in the nearest minimum, the BLR prefers the flat one.

    Deterministic (exact expectations, no draws): ``seed`` only seeds torch for safety.
    ``erm_minimum`` is the global minimiser of the loss and ``flat_minimum`` the other local one,
    both found by a grid search (:func:`blrlib.landscapes.local_minima`).
    """
    torch.manual_seed(seed)
    loss = SharpFlat()
    starts = _starts(-2.0, 5.0, scale, device)
    gd = run_gd(loss, starts, lr=4e-3, n_steps=3000)
    m, var, objective = run_bayes(loss, starts, var0=1.0, rho=0.1, n_steps=400)
    refs = _references(loss, -2.0, 5.0, torch.linspace(-2.0, 5.0, 701, dtype=torch.float64))
    erm, flat = refs["local_minima"][:2]
    return {
        "starts": starts.tolist(),
        "gd_end": gd.tolist(),
        "bayes_mean": m.tolist(),
        "bayes_var": var.tolist(),
        "bayes_objective": objective.tolist(),
        "bayes_summary": _summary(m, var, objective),
        "erm_minimum": erm,
        "flat_minimum": flat,
        **refs,
    }


@register
def fig1_wall(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Fig 1(a): GD and Newton stop next to the wall, the BLR's Gaussian moves away from it.

    Deterministic (exact expectations, no draws): ``seed`` only seeds torch for safety.
    """
    torch.manual_seed(seed)
    loss = Wall()
    starts = _starts(-2.0, 1.1, scale, device)
    gd = run_gd(loss, starts, lr=1e-2, n_steps=2000)
    newton = run_newton(loss, starts, n_steps=30)
    m, var, objective = run_bayes(loss, starts, var0=0.1, rho=0.2, n_steps=400)
    refs = _references(loss, -2.0, 1.1, torch.linspace(-1.5, 1.5, 301, dtype=torch.float64))
    return {
        "starts": starts.tolist(),
        "gd_end": gd.tolist(),
        "newton_end": newton.tolist(),
        "bayes_mean": m.tolist(),
        "bayes_var": var.tolist(),
        "bayes_objective": objective.tolist(),
        "bayes_summary": _summary(m, var, objective),
        "erm_minimum": refs["local_minima"][0],
        **refs,
    }
