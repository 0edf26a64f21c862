"""Sec 5.1-5.2 of Khan & Rue (2023): message passing vs the dense BLR step, and EM's variants.

    from blrlib import experiments
    rec = experiments.run("ssm_timing", scale="ci")        # dense BLR step vs Kalman/RTS, vs T
    rec = experiments.run("em_variants", scale="ci")       # batch, parallel and online EM
    rec = experiments.run("em_digits", scale="ci")         # Bernoulli mixture on binary digits

Each returns plain lists (JSON). At full scale: T up to where the dense step runs out of
memory, and EM on all digits with more components and iterations.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from blrlib import data, em
from blrlib import linear_gaussian as lg
from blrlib.experiments._registry import Scale, register
from blrlib.infer import kalman_smoother

__all__ = ["em_digits", "em_variants", "gmm_blobs", "ssm_problem", "ssm_timing"]


def ssm_problem(n_steps: int, *, seed: int = 0, device: torch.device | str = "cpu"):
    """A 2-D damped rotation observed in 2-D noise: (A, Q, C, r_var, m0, P0, y) in float64."""
    gen = torch.Generator(device=device).manual_seed(seed)
    kw = {"dtype": torch.float64, "device": device}
    angle = torch.tensor(0.2, **kw)
    rot = torch.stack(
        [torch.stack([angle.cos(), -angle.sin()]), torch.stack([angle.sin(), angle.cos()])]
    )
    a, q_cov = 0.98 * rot, 0.05 * torch.eye(2, **kw)
    c, r_var = torch.eye(2, **kw), torch.tensor([0.3, 0.3], **kw)
    m0, p0 = torch.tensor([2.0, 0.0], **kw), torch.eye(2, **kw)
    x, ys = torch.randn(2, generator=gen, **kw), []
    for _ in range(n_steps):
        x = a @ x + q_cov.sqrt() @ torch.randn(2, generator=gen, **kw)
        ys.append(c @ x + r_var.sqrt() * torch.randn(2, generator=gen, **kw))
    return a, q_cov, c, r_var, m0, p0, torch.stack(ys)


def _timed(fn, *args) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


@register
def ssm_timing(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Run time of the dense BLR step (O(T^3)) and the Kalman/RTS smoother (O(T)) against T."""
    sizes = (
        [25, 50, 100, 200, 400, 800] if scale is Scale.CI else [100, 300, 1000, 3000, 6000, 10000]
    )
    out: dict[str, Any] = {"T": [], "dense_s": [], "kalman_s": [], "max_abs_diff": []}
    for n_steps in sizes:
        args = ssm_problem(n_steps, seed=seed, device=device)
        (km, kp), kt = _timed(kalman_smoother, *args)
        try:
            (dm, dp), dt = _timed(lg.ssm_dense_posterior, *args)
            diff = max((dm - km).abs().max().item(), (dp - kp).abs().max().item())
        except (RuntimeError, MemoryError):  # the dense posterior no longer fits
            dt, diff = None, None
        out["T"].append(n_steps)
        out["dense_s"].append(dt)
        out["kalman_s"].append(kt)
        out["max_abs_diff"].append(diff)
    return out


def gmm_blobs(n: int, *, seed: int = 0) -> torch.Tensor:
    """Three elongated 2-D Gaussian clusters, n points (float64)."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [3.0, 3.0], [-3.0, 2.5]], dtype=torch.float64)
    shapes = torch.tensor(
        [[[1.0, 0.6], [0.0, 0.5]], [[0.7, 0.0], [0.3, 0.9]], [[0.5, 0.0], [0.0, 1.2]]],
        dtype=torch.float64,
    )
    z = torch.arange(n) % 3
    eps = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    return centres[z] + torch.einsum("npq,nq->np", shapes[z], eps)


@register
def em_variants(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Mean log-likelihood against passes: batch EM, parallel BLR-EM and online EM."""
    n, passes = (600, 40) if scale is Scale.CI else (60_000, 100)
    y = gmm_blobs(n, seed=seed).to(device)
    model = em.GaussianMixtureEM()
    means0 = torch.tensor([[1.0, 1.0], [2.0, 2.0], [-2.0, 1.0]], dtype=y.dtype, device=device)
    theta0 = model.from_moments(
        torch.full((3,), 1 / 3, dtype=y.dtype), means0, torch.eye(2, dtype=y.dtype).repeat(3, 1, 1)
    )
    batch = em.run(model, y, theta0, n_iter=passes)
    parallel = em.run(model, y, theta0, n_iter=passes, parallel=True)
    online = em.run_online(
        model,
        y,
        theta0,
        n_passes=passes,
        batch_size=n // 12,
        generator=torch.Generator().manual_seed(seed),
    )
    best = batch["loglik"][-1]

    def passes_to(path: list[float], gap: float) -> int | None:
        return next((i for i, v in enumerate(path) if best - v <= gap), None)

    return {
        "passes": list(range(passes + 1)),
        "batch": batch["loglik"],
        "parallel": parallel["loglik"],
        "online": online["loglik"],
        "passes_to_1e-6": {
            k: passes_to(v["loglik"], 1e-6)
            for k, v in (("batch", batch), ("parallel", parallel), ("online", online))
        },
        "passes_to_1e-3": {
            k: passes_to(v["loglik"], 1e-3)
            for k, v in (("batch", batch), ("parallel", parallel), ("online", online))
        },
    }


@register
def em_digits(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """A mixture of Bernoullis on the binarised scikit-learn digits: cluster means and log-lik."""
    k, n_iter = (10, 25) if scale is Scale.CI else (20, 200)
    x, labels = data.binary_digits(dtype=torch.float64)
    x = x.to(device)
    gen = torch.Generator().manual_seed(seed)
    weights = torch.full((k,), 1.0 / k, dtype=x.dtype, device=device)
    start = torch.randperm(x.shape[0], generator=gen)[:k]
    probs0 = 0.25 + 0.5 * x[start]  # k images, shrunk towards 1/2
    path = em.run(em.BernoulliMixtureEM(), x, (weights, torch.logit(probs0)), n_iter=n_iter)
    w, logits = path["theta"][-1]
    resp = em.e_step(em.BernoulliMixtureEM().log_joint((w, logits), x))
    cluster = resp.argmax(-1).cpu()
    # purity: the share of images whose cluster's majority label is their own label
    majority = torch.stack(
        [
            labels[cluster == j].mode().values if (cluster == j).any() else torch.tensor(-1.0)
            for j in range(k)
        ]
    )
    purity = (majority[cluster] == labels).double().mean().item()
    return {
        "loglik": path["loglik"],
        "weights": w.tolist(),
        "means": torch.sigmoid(logits).cpu().tolist(),
        "purity": purity,
    }
