"""The SGD chapter, part 2: constant SGD's iterates used as a posterior, and the BLR's view.

Variational EM with constant SGD, logistic regression on a real data set against HMC, and the
bridge to the Bayesian learning rule's SGD (Khan & Rue 2023, Eq 34-35).

from blrlib import experiments
record = experiments.run("sgd_bridge", scale="ci")
record["result"]["cov_error_blr"], record["result"]["cov_error_sgd"]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from blrlib import blr, data, families, infer, metrics, sgd_bayes
from blrlib.experiments._registry import Scale, register
from blrlib.experiments.sgd import F64, _rel, _sizes, regression
from blrlib.infer import mcmc

__all__ = ["sgd_bridge", "sgd_logistic", "sgd_vem"]


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
