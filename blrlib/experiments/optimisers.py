"""Sec 1.3 and 3.2 at scale: Newton and the variational BLR on logistic regression, and the
mixture rule on a multimodal loss.

    from blrlib import blr, data, families
    from blrlib.experiments.optimisers import logistic_loss
    X, y = data.logistic_regression(1000, 5)
    q = families.Gaussian(5)
    lam = q.natural_from_moments(torch.zeros(5), torch.eye(5))
    lam = blr.step(q, lam, logistic_loss(X, y, delta=1.0), rho=1.0)  # one Newton step
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from blrlib import blr, data, families
from blrlib.estimators import SumLoss
from blrlib.experiments._registry import Scale, register
from blrlib.landscapes import DoubleWell

__all__ = ["logistic_loss", "mixture_modes", "newton_logreg"]


def logistic_loss(X: Tensor, y: Tensor, delta: float) -> SumLoss:
    """Logistic regression with a N(0, I / delta) prior, as a SumLoss (Eq 1)."""

    def per_example(theta: Tensor) -> Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(X @ theta, y, reduction="none")

    return SumLoss(per_example, lambda theta: 0.5 * delta * theta @ theta)


def _trace(family, path, loss, seconds: float) -> dict[str, Any]:
    """Loss and gradient norm at the mean of every iterate, and the time per step."""
    means = [family.mean_cov(lam)[0] for lam in path]
    return {
        "loss": [float(loss(m)) for m in means],
        "grad_norm": [float(torch.func.grad(loss)(m).norm()) for m in means],
        "seconds_per_step": seconds / max(len(path) - 1, 1),
    }


def _timed_run(family, lam, loss, **options) -> tuple[list, float]:
    blr.step(family, lam, loss, **{k: v for k, v in options.items() if k != "n_steps"})  # warm-up
    start = time.perf_counter()
    path = blr.run(family, lam, loss, **options)
    if lam[0].is_cuda:
        torch.cuda.synchronize()
    return path, time.perf_counter() - start


@register
def newton_logreg(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Newton, the variational BLR and GD on logistic regression, all from the one engine."""
    n, dim, n_samples = (2000, 10, 16) if scale is Scale.CI else (200_000, 200, 8)
    X, y = data.logistic_regression(n, dim, seed=seed, dtype=torch.float64, device=device)
    loss = logistic_loss(X, y, delta=1.0)
    gaussian = families.Gaussian(dim, dtype=X.dtype, device=device)
    eye = torch.eye(dim, dtype=X.dtype, device=device)
    lam0 = gaussian.natural_from_moments(torch.zeros(dim, dtype=X.dtype, device=device), eye)

    newton, t_newton = _timed_run(gaussian, lam0, loss, rho=1.0, n_steps=8, estimator="delta")
    gen = torch.Generator(device=device).manual_seed(seed)
    vb, t_vb = _timed_run(
        gaussian,
        lam0,
        loss,
        rho=0.2,
        n_steps=60,
        estimator="mc",
        n_samples=n_samples,
        generator=gen,
    )
    # GD with the step 1/L, L the Lipschitz constant of the gradient: guaranteed descent
    lipschitz = float(torch.linalg.eigvalsh(X.T @ X)[-1]) / 4 + 1.0
    fixed = families.FixedCovGaussian(torch.full((dim,), lipschitz, dtype=X.dtype, device=device))
    gd, t_gd = _timed_run(
        fixed,
        fixed.natural_from_moments(lam0[0] * 0),
        loss,
        rho=1.0,
        n_steps=200,
        estimator="delta",
    )
    laplace = newton[-1]
    return {
        "n": n,
        "dim": dim,
        "newton": _trace(gaussian, newton, loss, t_newton),
        "variational": _trace(gaussian, vb, loss, t_vb)
        | {
            "kl_to_laplace": float(gaussian.kl(vb[-1], laplace)),
            "kl_from_prior_start": float(gaussian.kl(lam0, laplace)),
        },
        "gd": _trace(fixed, gd, loss, t_gd),
    }


@register
def mixture_modes(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Sec 3.2: a four-component mixture finds the four minima of a 2-D double well."""
    loss = DoubleWell()
    n_seeds = 1 if scale is Scale.CI else 64
    weights = torch.full((4,), 0.25, dtype=torch.float64, device=device)
    mixture = families.GaussianMixture(weights, 2, dtype=torch.float64, device=device)
    eye = torch.eye(2, dtype=torch.float64, device=device).expand(4, 2, 2)
    runs = []
    for s in range(seed, seed + n_seeds):
        gen = torch.Generator(device=device).manual_seed(s)
        m0 = torch.randn(4, 2, generator=gen, dtype=torch.float64, device=device)
        path = blr.run(
            mixture,
            mixture.natural_from_moments(m0, eye),
            loss,
            rho=0.1,
            n_steps=150,
            estimator="mc",
            n_samples=16,
            generator=gen,
        )
        means = torch.stack([mixture.mean_cov(lam)[0] for lam in path])
        wells = {tuple(row) for row in torch.sign(means[-1]).tolist()}
        runs.append({"seed": s, "means": means.tolist(), "n_wells": len(wells)})
    return {"runs": runs, "minima": loss.minima(2).tolist()}
