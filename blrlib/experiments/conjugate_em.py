"""Sec 5.1-5.2 of Khan & Rue (2023): message passing vs the dense BLR step, and EM's variants.

    from blrlib import experiments
    rec = experiments.run("ssm_timing", scale="ci")        # dense BLR step vs Kalman/RTS, vs T
    rec = experiments.run("em_variants", scale="ci")       # batch, parallel and online EM
    rec = experiments.run("em_digits", scale="ci")         # Bernoulli mixture on binary digits

Each returns plain lists (JSON). Sizes per scale are declared at the top of each experiment.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from blrlib import data, em, flops
from blrlib import linear_gaussian as lg
from blrlib.experiments import protocol
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
    """The dense BLR step (O(T^3)) against the Kalman/RTS smoother (O(T)): operations, seconds.

    Operation counts (``blrlib.flops``; the same on every machine) are taken at the sizes
    ``count_sizes`` (counting slows the smoother's Python loop); times and the largest
    difference between the two algorithms' marginals at every T in ``sizes``. The dense step
    is skipped above ``dense_max``, where its (2T, 2T) matrices would not fit in memory.
    """
    sizes, count_sizes, dense_max = protocol.by_scale(
        scale,
        ci=([50, 100, 200, 400, 800], [25, 50], 800),
        full=([100, 300, 1000, 2000, 5000, 10_000], [100, 300, 1000], 2000),
    )
    out: dict[str, Any] = {"T": [], "dense_s": [], "kalman_s": [], "max_abs_diff": []}
    for n_steps in protocol.progress(sizes, scale, "ssm_timing"):
        args = ssm_problem(n_steps, seed=seed, device=device)
        (km, kp), kt = _timed(kalman_smoother, *args)
        dt, diff = None, None
        if n_steps <= dense_max:
            (dm, dp), dt = _timed(lg.ssm_dense_posterior, *args)
            diff = max((dm - km).abs().max().item(), (dp - kp).abs().max().item())
        out["T"].append(n_steps)
        out["dense_s"].append(dt)
        out["kalman_s"].append(kt)
        out["max_abs_diff"].append(diff)
    out["flops_T"] = count_sizes
    problems = [ssm_problem(n_steps, seed=seed, device=device) for n_steps in count_sizes]
    out["dense_flops"] = [flops.count(lg.ssm_dense_posterior, *a)[1] for a in problems]
    out["kalman_flops"] = [flops.count(kalman_smoother, *a)[1] for a in problems]
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


def _precision_ratio(model: em.GaussianMixtureEM, theta, ref) -> float:
    """tr(S_k Cov_ref_k) / D averaged over components: how much larger theta's precisions are."""
    _, _, cov = model.moments(theta)
    _, _, cov_ref = model.moments(ref)
    ratio = torch.linalg.solve(cov, cov_ref).diagonal(dim1=-2, dim2=-1).mean(-1)
    return ratio.mean().item()


@register
def em_variants(
    *, scale: Scale, device: torch.device, seed: int = 0, n_seeds: int | None = None
) -> dict[str, Any]:
    """Mean log-likelihood against passes: batch EM, the parallel variant, and online EM that
    averages the statistics (Eq 57's rho < 1 step) or theta (Eq 55's rho < 1 step).

    Each seed draws new data and a new minibatch order. The reference optimum is batch EM run
    to a log-likelihood change below 1e-13. Minibatches hold 50 points at every scale, so the
    bias of averaging theta (about B_k / (B_k - D - 2) in the precisions, B_k the points per
    component in a minibatch) is the same at both scales.
    """
    n, passes = protocol.by_scale(scale, ci=(600, 40), full=(20_000, 60))
    batch_size = 50
    seeds = protocol.seeds(scale, base=seed, n_seeds=n_seeds)
    model = em.GaussianMixtureEM()
    methods = ("batch", "parallel", "online", "online_theta")
    out: dict[str, Any] = {"seeds": seeds, "n": n, "batch_size": batch_size}
    out["passes"] = list(range(passes + 1))
    out["loglik"] = {k: [] for k in methods}
    out["best"], out["precision_ratio"], out["predicted_ratio"] = [], [], []
    for s in protocol.progress(seeds, scale, "em_variants"):
        y = gmm_blobs(n, seed=s).to(device)
        means0 = torch.tensor([[1.0, 1.0], [2.0, 2.0], [-2.0, 1.0]], dtype=y.dtype, device=device)
        covs0 = torch.eye(2, dtype=y.dtype, device=device).repeat(3, 1, 1)
        theta0 = model.from_moments(torch.full((3,), 1 / 3, dtype=y.dtype), means0, covs0)
        ref = em.run(model, y, theta0, n_iter=1000, tol=1e-13)
        runs = {
            "batch": em.run(model, y, theta0, n_iter=passes),
            "parallel": em.run(model, y, theta0, n_iter=passes, parallel=True),
        }
        for name, average in (("online", "statistics"), ("online_theta", "natural")):
            runs[name] = em.run_online(
                model, y, theta0, n_passes=passes, batch_size=batch_size, average=average,
                generator=torch.Generator().manual_seed(s),
            )  # fmt: skip
        for k in methods:
            out["loglik"][k].append(runs[k]["loglik"])
        out["best"].append(ref["loglik"][-1])
        theta_ref = ref["theta"][-1]
        out["precision_ratio"].append(
            _precision_ratio(model, runs["online_theta"]["theta"][-1], theta_ref)
        )
        b_k = model.moments(theta_ref)[0] * batch_size
        out["predicted_ratio"].append((b_k / (b_k - y.shape[1] - 2)).mean().item())

    def gap(k: str, at: int) -> list[float]:
        return [b - path[at] for b, path in zip(out["best"], out["loglik"][k], strict=True)]

    def passes_to(k: str, tol: float) -> list[int | None]:
        return [
            next((i for i, v in enumerate(path) if b - v <= tol), None)
            for b, path in zip(out["best"], out["loglik"][k], strict=True)
        ]

    out["passes_to_1e-3"] = {k: passes_to(k, 1e-3) for k in methods}
    out["passes_to_1e-6"] = {k: passes_to(k, 1e-6) for k in methods}
    out["summary"] = {
        "online_gap_pass_10": protocol.summarise(gap("online", 10)),
        "online_gap_last": protocol.summarise(gap("online", passes)),
        "online_theta_gap_last": protocol.summarise(gap("online_theta", passes)),
        "precision_ratio": protocol.summarise(out["precision_ratio"]),
        "predicted_ratio": protocol.summarise(out["predicted_ratio"]),
    }
    return out


@register
def em_digits(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """A mixture of Bernoullis on the binarised scikit-learn digits: cluster means and log-lik."""
    k, n_iter = protocol.by_scale(scale, ci=(10, 25), full=(20, 200))
    x, labels = data.binary_digits(dtype=torch.float64)
    x = x.to(device)
    gen = torch.Generator().manual_seed(seed)
    model = em.BernoulliMixtureEM()
    weights = torch.full((k,), 1.0 / k, dtype=x.dtype, device=device)
    start = torch.randperm(x.shape[0], generator=gen)[:k]
    theta0 = model.from_moments(weights, 0.25 + 0.5 * x[start])  # k images, shrunk to 1/2
    path = em.run(model, x, theta0, n_iter=n_iter)
    theta = path["theta"][-1]
    resp = em.e_step(model.log_joint(theta, x))
    cluster = resp.argmax(-1).cpu()
    # purity: the share of images whose cluster's majority label is their own label
    majority = torch.stack(
        [
            labels[cluster == j].mode().values if (cluster == j).any() else torch.tensor(-1.0)
            for j in range(k)
        ]
    )
    purity = (majority[cluster] == labels).double().mean().item()
    w, probs = model.moments(theta)
    return {
        "loglik": path["loglik"],
        "weights": w.tolist(),
        "means": probs.cpu().tolist(),
        "purity": purity,
    }
