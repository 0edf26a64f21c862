"""The SGD chapter: constant SGD as a sampler (Mandt et al. 2017) next to the BLR's SGD.

from blrlib import experiments
record = experiments.run("sgd_stationary", scale="ci")
record["result"]["lyapunov_error"]   # relative Frobenius error of the predicted covariance
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from blrlib import blr, data, families, infer, metrics, sgd_bayes
from blrlib.experiments._registry import Scale, register
from blrlib.infer import mcmc

__all__ = [
    "sgd_bridge",
    "sgd_logistic",
    "sgd_samplers",
    "sgd_stationary",
    "sgd_sweeps",
    "sgd_vem",
]

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


@register
def sgd_vem(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Result 6: the prior precision learned by variational EM with constant SGD."""
    ci = scale is Scale.CI
    gen = torch.Generator(device=device).manual_seed(seed)
    n, dim = (200, 5) if ci else (2000, 20)
    X = torch.randn(n, dim, generator=gen, dtype=F64, device=device)
    truth = torch.randn(dim, generator=gen, dtype=F64, device=device) / 2  # alpha_true = 4
    y = X @ truth + torch.randn(n, generator=gen, dtype=F64, device=device)
    alphas = sgd_bayes.vem_prior_precision(
        X,
        y,
        noise_precision=1.0,
        alpha0=50.0,
        batch_size=10,
        n_rounds=8 if ci else 30,
        n_steps=200 if ci else 2000,
        n_chains=50 if ci else 2000,
        generator=gen,
    )
    grid = torch.logspace(-1, 2, 60, dtype=F64)
    return {
        "alphas": alphas,
        "evidence_alpha": sgd_bayes.evidence_prior_precision(X, y, noise_precision=1.0),
        "grid": grid.tolist(),
        "log_evidence": [
            sgd_bayes.log_evidence(X, y, prior_precision=float(a), noise_precision=1.0)
            for a in grid
        ],
    }


@register
def sgd_logistic(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Result 7: breast-cancer logistic regression, constant SGD at eps* vs HMC, MAP, Laplace."""
    ci = scale is Scale.CI
    gen = torch.Generator(device=device).manual_seed(seed)
    X, y = data.breast_cancer(dtype=F64)
    X, y = X.to(device), y.to(device)
    perm = torch.randperm(len(X), generator=gen, device=device)
    train, test = perm[:400], perm[400:]
    model = infer.BayesModel(
        nn.Linear(X.shape[1], 1, dtype=F64, device=device), "bernoulli", prior_precision=1.0
    )
    theta = infer.fit_map(model, X[train], y[train])
    N, S = len(train), 10
    A, C = sgd_bayes.local_quadratic(model, X[train], y[train], theta)
    eps = sgd_bayes.optimal_learning_rate(C, batch_size=S, n_data=N)

    def predictive(thetas: Tensor) -> Tensor:
        return torch.stack([torch.sigmoid(model.forward(t, X[test])) for t in thetas]).mean(0)

    probs = {"map": torch.sigmoid(model.forward(theta, X[test]))}
    laplace = infer.laplace(model, X[train], y[train], theta)
    probs["laplace"] = infer.predict(model, X[test], laplace, method="probit")
    idata = mcmc.hmc(
        mcmc.log_prob_fn(model, X[train], y[train]),
        theta.expand(16 if ci else 128, -1).clone(),
        n_samples=100 if ci else 2000,
        n_warmup=100 if ci else 1000,
        n_leapfrog=8 if ci else 30,
        generator=gen,
    )
    draws = mcmc.draws(idata)
    probs["hmc"] = predictive(draws[torch.randperm(len(draws), generator=gen)[:400]])
    loss = sgd_bayes.minibatch_loss(model, X[train], y[train])
    diag = sgd_bayes.optimal_preconditioner(C, batch_size=S, eps=eps, n_data=N, diagonal=True)
    for name, H in (("sgd", None), ("sgd_diagonal", diag)):
        chains = sgd_bayes.run_chains(
            loss,
            theta.expand(50 if ci else 2000, -1).clone(),
            n_data=N,
            batch_size=S,
            eps=eps,
            preconditioner=H,
            n_steps=500 if ci else 5000,
            burn_in=200 if ci else 1000,
            generator=gen,
        )
        kept = chains.samples[::10].reshape(-1, X.shape[1] + 1)
        probs[name] = predictive(kept[torch.randperm(len(kept), generator=gen)[:400]])
    return {
        "eps_star": eps,
        "hmc": mcmc.diagnostics(idata),
        "nll": {k: metrics.nll(p, y[test]) for k, p in probs.items()},
        "max_prob_error": {k: float((p - probs["hmc"]).abs().max()) for k, p in probs.items()},
    }


@register
def sgd_bridge(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Result 8: constant SGD's iterate cloud next to the BLR's learned Gaussian (Eq 12, 34-35)."""
    z = _sizes(scale)
    prob = regression(z["n"], 2, seed=seed, device=device)
    S, N = z["batch"], prob.n
    eps = sgd_bayes.optimal_learning_rate(prob.C, batch_size=S, n_data=N)
    gen = torch.Generator(device=device).manual_seed(seed + 4)
    chain = sgd_bayes.run_chains(
        sgd_bayes.minibatch_loss(prob.model, prob.X, prob.y),
        prob.chains(1),
        n_data=N,
        batch_size=S,
        eps=eps,
        n_steps=800,
        burn_in=200,
        generator=gen,
    )
    # the BLR with a full Gaussian and the delta method on minibatches: lam <- (1 - rho) lam
    # + rho (N (grad, Hessian) terms), a stochastic Newton/VON step whose q is the posterior
    q = families.Gaussian(2, dtype=F64, device=device)
    eye = torch.eye(2, dtype=F64, device=device)
    lam = q.natural_from_moments(torch.zeros(2, dtype=F64, device=device), eye)
    track = []
    for t in range(150):
        rho = 1 / (t + 2)  # Robbins-Monro: lam averages the minibatch site terms
        idx = torch.randint(0, N, (S,), generator=gen, device=device)

        def loss(theta: Tensor, idx: Tensor = idx) -> Tensor:
            nll = prob.model.nll(theta, prob.X[idx], prob.y[idx]).mean()
            return N * nll + prob.model.regulariser(theta)

        lam = blr.step(q, lam, loss, rho=rho, estimator="delta")
        m, cov = q.mean_cov(lam)
        track.append((m.tolist(), cov.tolist()))
    m, cov = q.mean_cov(lam)
    iterates = chain.samples[:, 0]
    return {
        "eps": eps,
        "theta": prob.theta.tolist(),
        "posterior": prob.posterior.tolist(),
        "lyapunov": sgd_bayes.stationary_covariance(prob.A, prob.C, eps=eps, batch_size=S).tolist(),
        "iterates": iterates.tolist(),
        "kl_sgd": prob.kl(iterates),
        "cov_error_sgd": _rel(torch.cov(iterates.T), prob.posterior),
        "blr_track": track,
        "kl_blr": float(sgd_bayes.gaussian_kl(m, cov, prob.theta, prob.posterior)),
        "cov_error_blr": _rel(cov, prob.posterior),
    }
