"""The SGD chapter, part 1: constant SGD's stationary distribution on a known posterior.

The Ornstein-Uhlenbeck predictions of Mandt et al. (2017) against many parallel chains on
Bayesian linear regression; :mod:`blrlib.experiments.sgd_posterior` uses the same problem.

from blrlib import experiments
record = experiments.run("sgd_stationary", scale="ci")
record["result"]["lyapunov_error"]   # relative Frobenius error of the predicted covariance
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from blrlib import infer, sgd_bayes
from blrlib.experiments._registry import Scale, register

__all__ = ["Problem", "regression", "sgd_samplers", "sgd_stationary", "sgd_sweeps"]

F64 = torch.float64


@dataclass(frozen=True)
class Problem:
    """Bayesian linear regression with correlated features of unequal scales."""

    X: Tensor
    y: Tensor
    model: infer.BayesModel
    theta: Tensor  # the posterior mean (= MAP)
    A: Tensor  # Hessian of the mean loss
    C: Tensor  # single-example gradient noise covariance
    posterior: Tensor  # the exact posterior covariance (N A)^-1

    @property
    def n(self) -> int:
        return self.X.shape[0]

    def chains(self, k: int) -> Tensor:
        """k copies of the posterior mean, (k, P): where constant-SGD chains start."""
        return self.theta.expand(k, -1).clone()

    def kl(self, samples: Tensor) -> float:
        """KL(N(mean, cov) of samples (..., P) || the exact posterior)."""
        x = samples.reshape(-1, samples.shape[-1])
        return float(sgd_bayes.gaussian_kl(x.mean(0), torch.cov(x.T), self.theta, self.posterior))

    def kl_of(self, cov: Tensor) -> float:
        """KL(N(theta*, cov) || the exact posterior)."""
        return float(sgd_bayes.gaussian_kl(self.theta, cov, self.theta, self.posterior))


def regression(n: int, dim: int, *, seed: int, device: torch.device) -> Problem:
    """y = x^T theta + N(0, 1), x ~ N(0, D^1/2 R D^1/2) with scales D from 2 to 0.5 and
    correlation 0.6, prior N(0, I): the Hessian A is anisotropic and, the noise being
    homoscedastic, the gradient noise C is close to A (B B^T proportional to A)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    scales = torch.linspace(2.0, 0.5, dim, dtype=F64, device=device).sqrt()
    corr = 0.4 * torch.eye(dim, dtype=F64, device=device) + 0.6
    chol = torch.linalg.cholesky(scales[:, None] * corr * scales[None, :])
    X = torch.randn(n, dim, generator=gen, dtype=F64, device=device) @ chol.T
    truth = torch.randn(dim, generator=gen, dtype=F64, device=device)
    y = X @ truth + torch.randn(n, generator=gen, dtype=F64, device=device)
    model = infer.BayesModel(
        nn.Linear(dim, 1, bias=False, dtype=F64, device=device),
        "gaussian",
        prior_precision=1.0,
        noise_precision=1.0,
    )
    theta = infer.fit_map(model, X, y)
    A, C = sgd_bayes.local_quadratic(model, X, y, theta)
    return Problem(X, y, model, theta, A, C, torch.linalg.inv(n * A))


def _sizes(scale: Scale) -> dict[str, int]:
    if scale is Scale.CI:
        return {"n": 300, "dim": 2, "batch": 10, "chains": 1000, "steps": 600}
    return {"n": 5000, "dim": 10, "batch": 10, "chains": 20000, "steps": 20000}


def _rel(a: Tensor, b: Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


@register
def sgd_stationary(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Results 1 and 3: constant SGD's covariance vs the Lyapunov prediction; preconditioning."""
    z = _sizes(scale)
    prob = regression(z["n"], z["dim"], seed=seed, device=device)
    S, N = z["batch"], prob.n
    eps = sgd_bayes.optimal_learning_rate(prob.C, batch_size=S, n_data=N)
    loss = sgd_bayes.minibatch_loss(prob.model, prob.X, prob.y)
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    settings = {
        "sgd": None,
        "diagonal": sgd_bayes.optimal_preconditioner(
            prob.C, batch_size=S, eps=eps, n_data=N, diagonal=True
        ),
        "full": sgd_bayes.optimal_preconditioner(prob.C, batch_size=S, eps=eps, n_data=N),
    }
    out: dict[str, Any] = {"eps_star": eps, "posterior": prob.posterior.tolist(), "runs": {}}
    for name, H in settings.items():
        chains = sgd_bayes.run_chains(
            loss,
            prob.chains(z["chains"]),
            n_data=N,
            batch_size=S,
            eps=eps,
            n_steps=z["steps"],
            burn_in=z["steps"] // 3,
            preconditioner=H,
            generator=gen,
        )
        kept = chains.samples[::10]  # ten steps apart: nearly independent at eps*
        emp = torch.cov(kept.reshape(-1, prob.X.shape[1]).T)
        pred = {
            kind: sgd_bayes.stationary_covariance(
                prob.A, prob.C, eps=eps, batch_size=S, preconditioner=H, discrete=kind == "discrete"
            )
            for kind in ("continuous", "discrete")
        }
        out["runs"][name] = {
            "empirical": emp.tolist(),
            "continuous": pred["continuous"].tolist(),
            "discrete": pred["discrete"].tolist(),
            "error_discrete": _rel(emp, pred["discrete"]),
            "error_continuous": _rel(emp, pred["continuous"]),
            "kl_empirical": prob.kl(kept),
            "kl_predicted": prob.kl_of(pred["continuous"]),
            "scatter": kept[-1, :500].tolist(),
        }
    out["lyapunov_error"] = out["runs"]["sgd"]["error_discrete"]
    out["theta"] = prob.theta.tolist()
    return out


def _local_minimiser(x: Tensor, f: Tensor) -> float:
    """Minimiser of a parabola in log x through the three points around the smallest f."""
    i = int(f.argmin().clamp(1, len(f) - 2))
    u, v = x[i - 1 : i + 2].log(), f[i - 1 : i + 2]
    a, b, _ = torch.linalg.solve(torch.stack([u**2, u, torch.ones_like(u)], 1), v)
    return float((-b / (2 * a)).exp())


@register
def sgd_sweeps(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Result 2: KL(stationary || posterior) against the learning rate and the batch size."""
    z = _sizes(scale)
    prob = regression(z["n"], z["dim"], seed=seed, device=device)
    S, N, dim = z["batch"], prob.n, prob.X.shape[1]
    per = z["chains"] // 5
    factors = 2.0 ** torch.linspace(-1.5, 1.5, 7, dtype=F64, device=device)
    eps_star = sgd_bayes.optimal_learning_rate(prob.C, batch_size=S, n_data=N)
    loss = sgd_bayes.minibatch_loss(prob.model, prob.X, prob.y)
    gen = torch.Generator(device=device).manual_seed(seed + 2)
    steps = 3 * z["steps"] // 2
    out: dict[str, Any] = {"eps_star": eps_star, "batch_size": S}
    for axis in ("eps", "batch"):
        if axis == "eps":
            grid = eps_star * factors
            eps, sizes = grid.repeat_interleave(per), S
        else:
            grid = (S * factors).round()
            eps, sizes = eps_star, grid.long().repeat_interleave(per)
        chains = sgd_bayes.run_chains(
            loss,
            prob.chains(len(factors) * per),
            n_data=N,
            batch_size=sizes,
            eps=eps,
            n_steps=steps,
            burn_in=steps // 2,
            generator=gen,
        )
        groups = chains.samples[::10].reshape(-1, len(factors), per, dim).transpose(0, 1)
        kl = torch.tensor([prob.kl(g) for g in groups], dtype=F64)
        predicted = torch.tensor(
            [
                prob.kl_of(
                    sgd_bayes.stationary_covariance(
                        prob.A,
                        prob.C,
                        eps=float(eps_star * f) if axis == "eps" else eps_star,
                        batch_size=S if axis == "eps" else int(g),
                        discrete=True,
                    )
                )
                for f, g in zip(factors, grid, strict=True)
            ],
            dtype=F64,
        )
        out[axis] = {
            "grid": grid.tolist(),
            "kl_empirical": kl.tolist(),
            "kl_predicted": predicted.tolist(),
            "empirical_minimiser": _local_minimiser(grid.cpu(), kl),
        }
    # at fixed eps = eps*(S), the KL-optimal batch size is S itself: S* = eps N tr C / (2 P)
    out["batch_star"] = eps_star * N * float(prob.C.trace()) / (2 * dim)
    return out


@register
def sgd_samplers(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Results 4 and 5: SGLD, SGFS and momentum SGD at finite steps; Polyak averaging."""
    z = _sizes(scale)
    prob = regression(z["n"], z["dim"], seed=seed, device=device)
    S, N, dim = z["batch"], prob.n, prob.X.shape[1]
    eps_star = sgd_bayes.optimal_learning_rate(prob.C, batch_size=S, n_data=N)
    loss = sgd_bayes.minibatch_loss(prob.model, prob.X, prob.y)
    gen = torch.Generator(device=device).manual_seed(seed + 3)
    eye = torch.eye(dim, dtype=F64, device=device)
    per, steps = z["chains"] // 3, z["steps"]
    # chains start at posterior draws: only the sampler's own excess covariance must build up
    start = prob.theta + torch.randn(3 * per, dim, generator=gen, dtype=F64, device=device) @ (
        torch.linalg.cholesky(prob.posterior).T
    )
    out: dict[str, Any] = {"eps_star": eps_star, "posterior": prob.posterior.tolist()}

    def summary(samples: Tensor, pred: Tensor) -> dict[str, Any]:
        emp = torch.cov(samples.reshape(-1, dim).T)
        return {
            "empirical": emp.tolist(),
            "predicted": pred.tolist(),
            "error": _rel(emp, pred),
            "bias": _rel(pred, prob.posterior),
            "bias_empirical": _rel(emp, prob.posterior),
        }

    factors = [0.5, 1.0, 2.0]
    sgld = sgd_bayes.run_chains(
        loss,
        start,
        n_data=N,
        batch_size=S,
        eps=torch.tensor(factors, dtype=F64, device=device).repeat_interleave(per) * eps_star,
        n_steps=steps,
        burn_in=steps // 2,
        sampler="sgld",
        generator=gen,
    )
    groups = sgld.samples[::10].reshape(-1, 3, per, dim).transpose(0, 1)
    out["sgld"] = {
        "factors": factors,
        "runs": [
            summary(
                g,
                sgd_bayes.stationary_covariance(
                    prob.A,
                    prob.C,
                    eps=f * eps_star,
                    batch_size=S,
                    injected=sgd_bayes.sgld_noise(eye, eps=f * eps_star, n_data=N),
                    discrete=True,
                ),
            )
            for f, g in zip(factors, groups, strict=True)
        ],
    }
    out["sgfs"] = {"eps": [0.5, 2.0, 50.0], "runs": []}
    for eps in out["sgfs"]["eps"]:
        chains = sgd_bayes.run_chains(
            loss,
            start[:per],
            n_data=N,
            batch_size=S,
            eps=eps,
            n_steps=steps // 2,
            burn_in=steps // 4,
            sampler="sgfs",
            fisher=prob.C,
            generator=gen,
        )
        K, Q = sgd_bayes.sgfs_step(prob.C, eps=eps, batch_size=S, n_data=N)
        pred = sgd_bayes.stationary_covariance(
            prob.A, prob.C, eps=1.0, batch_size=S, preconditioner=K, injected=Q, discrete=True
        )
        out["sgfs"]["runs"].append(summary(chains.samples[::5], pred))
    mu = 0.9
    momentum = sgd_bayes.run_chains(
        loss,
        prob.chains(per),
        n_data=N,
        batch_size=S,
        eps=(1 - mu) * eps_star,
        momentum=mu,
        n_steps=steps,
        burn_in=steps // 2,
        generator=gen,
    )
    out["momentum"] = {
        "momentum": mu,
        **summary(
            momentum.samples[::10],
            sgd_bayes.stationary_covariance(
                prob.A, prob.C, eps=(1 - mu) * eps_star, batch_size=S, momentum=mu, discrete=True
            ),
        ),
        "sgd_at_eps_star": sgd_bayes.stationary_covariance(
            prob.A, prob.C, eps=eps_star, batch_size=S
        ).tolist(),
    }
    # Polyak averaging: the error of the running average of stationary iterates
    factors = [1.0, 2.0, 4.0]
    polyak = sgd_bayes.run_chains(
        loss,
        prob.chains(3 * per),
        n_data=N,
        batch_size=S,
        eps=torch.tensor(factors, dtype=F64, device=device).repeat_interleave(per) * eps_star,
        n_steps=steps + steps // 2,
        burn_in=steps // 2,
        generator=gen,
    )
    T = torch.arange(1, steps + 1, dtype=F64, device=device)
    running = polyak.samples.cumsum(0) / T[:, None, None]
    err = (running - prob.theta).square().sum(-1).reshape(steps, 3, per).mean(-1)
    at = torch.unique(torch.logspace(0, torch.log10(T[-1]), 30, device=device).long()) - 1
    out["polyak"] = {
        "factors": factors,
        "T": T[at].tolist(),
        "error": err[at].T.tolist(),
        "predicted": [
            float(sgd_bayes.polyak_covariance(prob.A, prob.C, batch_size=S, n_steps=int(t)).trace())
            for t in T[at]
        ],
    }
    return out
