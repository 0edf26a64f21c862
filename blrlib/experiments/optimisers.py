"""Sec 1.3 and 3.2 at scale: Newton and the variational BLR on logistic regression, and the
mixture rule on a multimodal loss.

    from blrlib import blr, data, families
    from blrlib.experiments.optimisers import logistic_loss
    X, y = data.logistic_regression(1000, 5)
    q = families.Gaussian(5)
    lam = q.natural_from_moments(torch.zeros(5), torch.eye(5))
    lam = blr.step(q, lam, logistic_loss(X, y, delta=1.0), rho=1.0)  # one Newton step

Nothing here is tuned: every step size, draw count and iteration count is fixed in the code,
and every claim is about the training objective, so no data are held out.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from blrlib import blr, data, families, ncvi
from blrlib.estimators import SumLoss
from blrlib.experiments import protocol
from blrlib.experiments._registry import Scale, register
from blrlib.families import Params
from blrlib.landscapes import DoubleWell

__all__ = ["fixed_point_scores", "logistic_grad_hess", "logistic_loss", "mixture_modes",
           "newton_logreg"]  # fmt: skip


def logistic_loss(X: Tensor, y: Tensor, delta: float) -> SumLoss:
    """Logistic regression with a N(0, I / delta) prior, as a SumLoss (Eq 1).

    The per-example loss softplus(x^T theta) - y x^T theta is the binary cross-entropy with
    logits, written so that torch.func's Hessians are cheap.
    """

    def per_example(theta: Tensor) -> Tensor:
        logits = X @ theta
        return F.softplus(logits) - y * logits

    return SumLoss(per_example, lambda theta: 0.5 * delta * theta @ theta)


def logistic_grad_hess(X: Tensor, y: Tensor, delta: float, thetas: Tensor) -> tuple[Tensor, ...]:
    """The gradient and Hessian of :func:`logistic_loss`, averaged over the rows of ``thetas``.

    In closed form: the mean over theta of X^T (sigmoid(X theta) - y) + delta theta, and of
    X^T diag(s (1 - s)) X + delta I with s = sigmoid(X theta), which is X^T diag(mean of
    s (1 - s)) X + delta I (one P x P product for all the rows).

    Args:
        X, y: the data, (N, P) and (N,).
        delta: the prior precision.
        thetas: the points, (n, P).

    Returns:
        The mean gradient (P,) and the mean Hessian (P, P).
    """
    probs = torch.sigmoid(thetas @ X.T)  # (n, N)
    grad = (probs - y).mean(0) @ X + delta * thetas.mean(0)
    weights = (probs * (1 - probs)).mean(0)  # (N,)
    eye = torch.eye(X.shape[1], dtype=X.dtype, device=X.device)
    return grad, (X.T * weights) @ X + delta * eye


def fixed_point_scores(
    family: families.Gaussian,
    lam: Params,
    X: Tensor,
    y: Tensor,
    delta: float,
    *,
    n_batches: int,
    batch_size: int,
    generator: torch.Generator,
) -> dict[str, float]:
    """Eq 25-26 at q by Monte Carlo: E_q[grad] = 0 and E_q[Hessian] = S, in standard errors.

    Draws ``n_batches`` batches of ``batch_size`` from q; the batch means give each entry's
    estimate and standard error. Returns the largest |E_q[grad]| / se over the P entries
    (``grad_z``) and the largest |E_q[Hessian] - S| / se over the Hessian's entries (``hess_z``).
    At the BLR's fixed point both are standard-normal maxima (a few units); a Gaussian that is
    not the fixed point scores higher as the number of draws grows.
    """
    means_g, means_h = [], []
    for _ in range(n_batches):
        thetas = family.sample(lam, batch_size, generator=generator)
        g, h = logistic_grad_hess(X, y, delta, thetas)
        means_g.append(g)
        means_h.append(h)
    g, h = torch.stack(means_g), torch.stack(means_h)
    precision = -2 * lam[1]  # lam = (S m, -S / 2), Eq 9
    grad_z = g.mean(0).abs() / (g.std(0) / n_batches**0.5)
    hess_z = (h.mean(0) - precision).abs() / (h.std(0) / n_batches**0.5)
    return {"grad_z": float(grad_z.max()), "hess_z": float(hess_z.max())}


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


def _average(path: list[Params]) -> Params:
    """The average of natural parameters over iterates (Polyak averaging in lam)."""
    return tuple(torch.stack(p).mean(0) for p in zip(*path, strict=True))


def _sizes(scale: Scale) -> tuple[int, int, int, int]:
    """Data (N, P), VON steps (the second half averaged) and Monte Carlo check batches of 64.

    ci: a few seconds. full: about 50 s of CPU time a seed (4 minutes for the 5 seeds on one
    core, measured), dominated by VON's 400 x 16 Hessians. gpu: the largest problem.
    """
    return protocol.by_scale(
        scale, ci=(500, 10, 100, 64), full=(4000, 20, 400, 64), gpu=(200_000, 200, 400, 256)
    )


def _newton_logreg_seed(scale: Scale, device: torch.device, seed: int) -> dict[str, Any]:
    n, dim, von_steps, n_batches = _sizes(scale)
    X, y = data.logistic_regression(n, dim, seed=seed, dtype=torch.float64, device=device)
    delta = 1.0
    loss = logistic_loss(X, y, delta=delta)
    gaussian = families.Gaussian(dim, dtype=X.dtype, device=device)
    zeros = torch.zeros(dim, dtype=X.dtype, device=device)
    prior = gaussian.natural_from_moments(
        zeros, delta * torch.eye(dim, dtype=X.dtype, device=device)
    )

    newton, t_newton = _timed_run(gaussian, prior, loss, rho=1.0, n_steps=8, estimator="delta")
    gen = torch.Generator(device=device).manual_seed(seed)
    von, t_von = _timed_run(
        gaussian, prior, loss, rho=0.2, n_steps=von_steps, estimator="mc", n_samples=16,
        generator=gen,
    )  # fmt: skip
    # GD with the step 1/L, L the Lipschitz constant of the gradient: guaranteed descent
    lipschitz = float(torch.linalg.eigvalsh(X.T @ X)[-1]) / 4 + delta
    fixed = families.FixedCovGaussian(torch.full((dim,), lipschitz, dtype=X.dtype, device=device))
    gd, t_gd = _timed_run(
        fixed, fixed.natural_from_moments(zeros), loss, rho=1.0, n_steps=200, estimator="delta"
    )
    laplace, von_avg = newton[-1], _average(von[von_steps // 2 + 1 :])
    # the best Gaussian, independently of the BLR: L-BFGS on the ELBO by Gauss-Hermite quadrature
    vi = ncvi.gaussian_vi_optimum(gaussian, prior, ncvi.LogisticFactors(X, y))
    check = torch.Generator(device=device).manual_seed(seed + 10_000)
    scores = {
        name: fixed_point_scores(
            gaussian, lam, X, y, delta, n_batches=n_batches, batch_size=64, generator=check
        )
        for name, lam in [("vi", vi), ("laplace", laplace), ("von_avg", von_avg)]
    }
    return {
        "seed": seed,
        "newton": _trace(gaussian, newton, loss, t_newton),
        "variational": _trace(gaussian, von, loss, t_von),
        "gd": _trace(fixed, gd, loss, t_gd),
        "kl_to_vi": {
            "von_avg": float(gaussian.kl(von_avg, vi)),
            "von_last": float(gaussian.kl(von[-1], vi)),
            "laplace": float(gaussian.kl(laplace, vi)),
            "prior": float(gaussian.kl(prior, vi)),
        },
        "fixed_point": scores,
    }


@register
def newton_logreg(
    *, scale: Scale, device: torch.device, seed: int = 0, n_seeds: int | None = None
) -> dict[str, Any]:
    """Newton, variational online Newton (VON) and GD on logistic regression, one engine.

    Per seed (a data set and the VON draws): the traces of the three methods; KL from the
    averaged VON iterate, its last iterate, the Laplace Gaussian and the prior to the Gaussian-VI
    optimum (``ncvi.gaussian_vi_optimum``, computed without the BLR); and the Monte Carlo scores
    of Eq 25-26 (:func:`fixed_point_scores`) at the VI optimum, Laplace and averaged VON.
    ``summary``: mean and sd over seeds of the KLs and scores.
    """
    n, dim, von_steps, n_batches = _sizes(scale)
    runs = [
        _newton_logreg_seed(scale, device, s)
        for s in protocol.seeds(scale, base=seed, n_seeds=n_seeds)
    ]
    flat = [
        {f"kl_{k}": v for k, v in r["kl_to_vi"].items()}
        | {f"{k}_{s}": v for k, d in r["fixed_point"].items() for s, v in d.items()}
        for r in runs
    ]
    return {
        "n": n,
        "dim": dim,
        "von_steps": von_steps,
        "mc_check_draws": n_batches * 64,
        "seeds": [r["seed"] for r in runs],
        "runs": runs,
        "summary": protocol.summarise_runs(flat),
    }


@register
def mixture_modes(
    *, scale: Scale, device: torch.device, seed: int = 0, n_seeds: int | None = None
) -> dict[str, Any]:
    """Sec 3.2: a four-component mixture finds the four minima of a 2-D double well.

    One run per seed (random starting means; 1 seed at ci scale, 64 at full scale, about 4
    minutes on one core); each run keeps its final means and the number of wells they sit in,
    the first run also its whole path. ``summary`` gives the mean and sd over seeds of the
    number of wells found and of the indicator that all four are.
    """
    loss = DoubleWell()
    weights = torch.full((4,), 0.25, dtype=torch.float64, device=device)
    mixture = families.GaussianMixture(weights, 2, dtype=torch.float64, device=device)
    eye = torch.eye(2, dtype=torch.float64, device=device).expand(4, 2, 2)
    runs = []
    for s in protocol.seeds(scale, base=seed, n_seeds=n_seeds, ci=1, full=64):
        gen = torch.Generator(device=device).manual_seed(s)
        m0 = torch.randn(4, 2, generator=gen, dtype=torch.float64, device=device)
        path = blr.run(
            mixture, mixture.natural_from_moments(m0, eye), loss, rho=0.1, n_steps=150,
            estimator="mc", n_samples=16, generator=gen,
        )  # fmt: skip
        means = torch.stack([mixture.mean_cov(lam)[0] for lam in path])
        wells = {tuple(row) for row in torch.sign(means[-1]).tolist()}
        run = {"seed": s, "final_means": means[-1].tolist(), "n_wells": len(wells)}
        if not runs:  # the path of the first run only, for the figure
            run["means"] = means.tolist()
        runs.append(run)
    summary = protocol.summarise_runs(
        [{"n_wells": r["n_wells"], "all_four": float(r["n_wells"] == 4)} for r in runs]
    )
    return {
        "seeds": [r["seed"] for r in runs],
        "runs": runs,
        "summary": summary,
        "minima": loss.minima(2).tolist(),
    }
