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
from blrlib.experiments import protocol
from blrlib.experiments._registry import Scale, register
from blrlib.experiments.sgd import F64, _rel, regression
from blrlib.infer import mcmc

__all__ = ["logistic_seed", "sgd_bridge", "sgd_logistic", "sgd_vem", "vem_fixed_point"]


def vem_fixed_point(X: Tensor, y: Tensor, *, batch_size: int, alpha0: float = 1.0) -> float:
    """The fixed point of variational EM whose E-step is constant SGD's exact stationary law.

    For Bayesian linear regression with unit noise: q(alpha) = N(theta*(alpha), Sigma(alpha)),
    Sigma the exact stationary covariance of minibatch SGD at eps*(alpha)
    (:func:`blrlib.sgd_bayes.least_squares_covariance`), iterated through the M-step
    alpha = P / E_q|theta|^2 until it stops moving. It differs from the evidence maximiser
    only because q is SGD's Gaussian and not the posterior.
    """
    N, P = X.shape
    alpha, eye = alpha0, torch.eye(P, dtype=X.dtype, device=X.device)
    for _ in range(200):
        theta = torch.linalg.solve(X.T @ X + alpha * eye, X.T @ y)
        C = sgd_bayes.gradient_noise_covariance((X @ theta - y)[:, None] * X)
        eps = sgd_bayes.optimal_learning_rate(C, batch_size=batch_size, n_data=N)
        sigma = sgd_bayes.least_squares_covariance(
            X, C, eps=eps, batch_size=batch_size, prior_precision=alpha
        )
        new = P / float(theta.square().sum() + sigma.trace())
        if abs(new / alpha - 1) < 1e-12:
            break
        alpha = new
    return alpha


@register
def sgd_vem(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Result 6: the prior precision learned by variational EM with constant SGD."""
    z = protocol.by_scale(
        scale,
        ci={"n": 200, "dim": 5, "rounds": 8, "steps": 50, "chains": 100},
        full={"n": 2000, "dim": 20, "rounds": 20, "steps": 300, "chains": 1000},
    )
    gen = torch.Generator(device=device).manual_seed(seed)
    X = torch.randn(z["n"], z["dim"], generator=gen, dtype=F64, device=device)
    truth = torch.randn(z["dim"], generator=gen, dtype=F64, device=device) / 2  # alpha = 4
    y = X @ truth + torch.randn(z["n"], generator=gen, dtype=F64, device=device)
    runs = {}
    for name, rho in (("closed_form", 1.0), ("gradient", 0.7)):
        alphas = sgd_bayes.vem_prior_precision(
            X, y, noise_precision=1.0, alpha0=50.0, batch_size=10, n_rounds=z["rounds"],
            n_steps=z["steps"], n_chains=z["chains"], hyper_lr=rho, generator=gen,
        )  # fmt: skip
        last = protocol.summarise(alphas[-4:])  # after convergence: rounds nearly independent
        runs[name] = {"hyper_lr": rho, "alphas": alphas, "learned": last["mean"],
                      "se": last["sd"] / 2}  # fmt: skip
    grid = torch.logspace(-1, 2, 60, dtype=F64)
    Xc, yc = X.cpu(), y.cpu()
    return {
        "runs": runs,
        "evidence_alpha": sgd_bayes.evidence_prior_precision(Xc, yc, noise_precision=1.0),
        "fixed_point": vem_fixed_point(Xc, yc, batch_size=10),
        "grid": grid.tolist(),
        "log_evidence": [
            sgd_bayes.log_evidence(Xc, yc, prior_precision=float(a), noise_precision=1.0)
            for a in grid
        ],
    }


def logistic_seed(seed: int, z: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """One seed of :func:`sgd_logistic`: a stratified split, every method, every metric.

    Nothing is tuned: eps* and H* are formulas of the training gradients, and the prior
    precision (1) defines the posterior that HMC samples; so no validation split is carved and
    the test split is scored once.
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    X, y = data.breast_cancer(dtype=F64)
    X, y = X.to(device), y.to(device)
    (Xtr, ytr), (Xte, yte) = protocol.train_val_split(X, y, val_fraction=0.3, seed=seed)
    model = infer.BayesModel(
        nn.Linear(X.shape[1], 1, dtype=F64, device=device), "bernoulli", prior_precision=1.0
    )
    theta = infer.fit_map(
        model, Xtr, ytr, theta0=torch.zeros(X.shape[1] + 1, dtype=F64, device=device)
    )
    N, S = len(Xtr), 10
    A, C = sgd_bayes.local_quadratic(model, Xtr, ytr, theta)
    eps = sgd_bayes.optimal_learning_rate(C, batch_size=S, n_data=N)

    forward = torch.func.vmap(model.forward, in_dims=(0, None))

    def predictive(thetas: Tensor) -> Tensor:
        return torch.sigmoid(forward(thetas, Xte)).mean(0)

    probs = {"map": torch.sigmoid(model.forward(theta, Xte))}
    laplace = infer.laplace(model, Xtr, ytr, theta)
    probs["laplace"] = infer.predict(model, Xte, laplace, method="probit")
    h = z["hmc"]
    idata = mcmc.hmc(
        mcmc.log_prob_fn(model, Xtr, ytr),
        theta.expand(h["chains"], -1).clone(),
        n_samples=h["samples"],
        n_warmup=h["warmup"],
        n_leapfrog=h["leapfrog"],
        generator=gen,
    )
    probs["hmc"] = predictive(mcmc.draws(idata))
    precond = {
        "sgd": None,
        "sgd_diagonal": sgd_bayes.optimal_preconditioner(
            C, batch_size=S, eps=eps, n_data=N, diagonal=True
        ),
        "sgd_full": sgd_bayes.optimal_preconditioner(C, batch_size=S, eps=eps, n_data=N),
    }
    # the discrete iteration is stable only when eps lambda_max(H A) < 2
    eye = torch.eye(len(A), dtype=F64, device=device)
    stability = {
        k: eps * float(torch.linalg.eigvals((eye if H is None else H) @ A).real.max())
        for k, H in precond.items()
    }
    loss = sgd_bayes.minibatch_loss(model, Xtr, ytr)
    for name in ("sgd", "sgd_diagonal"):
        chains = sgd_bayes.run_chains(
            loss, theta.expand(z["chains"], -1).clone(), n_data=N, batch_size=S, eps=eps,
            preconditioner=precond[name], n_steps=z["burn"] + z["kept"], burn_in=z["burn"],
            thin=z["thin"], generator=gen,
        )  # fmt: skip
        probs[name] = predictive(chains.samples.reshape(-1, X.shape[1] + 1))
    # the full H*: a few steps from theta* show the divergence
    full = sgd_bayes.run_chains(
        loss, theta.expand(8, -1).clone(), n_data=N, batch_size=S, eps=eps,
        preconditioner=precond["sgd_full"], n_steps=6, generator=gen,
    )  # fmt: skip
    ref = probs["hmc"]
    return {
        "eps_star": eps,
        "hmc": mcmc.diagnostics(idata),
        "nll": {k: metrics.nll(p, yte) for k, p in probs.items()},
        "max_prob_error": {k: float((p - ref).abs().max()) for k, p in probs.items()},
        "mean_prob_error": {k: float((p - ref).abs().mean()) for k, p in probs.items()},
        "stability": stability,
        "full_distance": float((full.samples - theta).norm(dim=-1).max()),
        "n_train": N,
        "n_test": len(Xte),
    }


@register
def sgd_logistic(
    *, scale: Scale, device: torch.device, seed: int = 0, n_seeds: int | None = None
) -> dict[str, Any]:
    """Result 7: breast-cancer logistic regression, constant SGD at eps* vs HMC, MAP, Laplace."""
    z = protocol.by_scale(
        scale,
        ci={"chains": 60, "burn": 60, "kept": 120, "thin": 4,
            "hmc": {"chains": 16, "samples": 80, "warmup": 70, "leapfrog": 8}},
        full={"chains": 500, "burn": 1000, "kept": 2000, "thin": 20,
              "hmc": {"chains": 64, "samples": 1000, "warmup": 500, "leapfrog": 10}},
    )  # fmt: skip
    seeds = protocol.seeds(scale, base=seed, n_seeds=n_seeds, ci=2)
    runs = [logistic_seed(s, z, device) for s in seeds]
    out: dict[str, Any] = {"seeds": seeds, "runs": runs, "summary": {}, "differences": {}}
    for metric in ("nll", "max_prob_error", "mean_prob_error"):
        out["summary"][metric] = protocol.summarise_runs([r[metric] for r in runs])
        out["differences"][metric] = {
            f"{a}-{b}": protocol.paired_difference(
                [r[metric][a] for r in runs], [r[metric][b] for r in runs]
            )
            for a, b in (("laplace", "sgd"), ("laplace", "sgd_diagonal"), ("map", "sgd"),
                         ("map", "sgd_diagonal"), ("laplace", "map"))
        }  # fmt: skip
    out["stability"] = protocol.summarise_runs([r["stability"] for r in runs])
    out["full_distance"] = min(r["full_distance"] for r in runs)
    out["max_rhat"] = max(r["hmc"]["max_rhat"] for r in runs)
    out["min_ess_bulk"] = min(r["hmc"]["min_ess_bulk"] for r in runs)
    return out


@register
def sgd_bridge(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Result 8: constant SGD's iterate cloud next to the BLR's learned Gaussian (Eq 12, 34-35)."""
    z = protocol.by_scale(scale, ci={"n": 300, "steps": 500}, full={"n": 5000, "steps": 5000})
    prob = regression(z["n"], 2, seed=seed, device=device)
    S, N = 10, prob.n
    eps = sgd_bayes.optimal_learning_rate(prob.C, batch_size=S, n_data=N)
    gen = torch.Generator(device=device).manual_seed(seed + 4)
    chain = sgd_bayes.run_chains(
        sgd_bayes.minibatch_loss(prob.model, prob.X, prob.y),
        prob.chains(1),
        n_data=N,
        batch_size=S,
        eps=eps,
        n_steps=z["steps"],
        burn_in=z["steps"] // 5,
        generator=gen,
    )
    # the BLR with a full Gaussian and the delta method on minibatches: lam <- (1 - rho) lam
    # + rho (N (grad, Hessian) terms), a stochastic Newton/VON step whose q is the posterior
    q = families.Gaussian(2, dtype=F64, device=device)
    eye = torch.eye(2, dtype=F64, device=device)
    lam = q.natural_from_moments(torch.zeros(2, dtype=F64, device=device), eye)
    track = []
    n_blr = 100
    for t in range(n_blr):
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
    # units: the BLR's mean step rho Lambda^-1 grad(N L) is an SGD step on the mean loss L with
    # the matrix learning rate eps H = rho N Lambda^-1 (Lambda = cov^-1, the learned precision)
    step = torch.linalg.eigvalsh(1 / (n_blr + 1) * N * cov)
    return {
        "eps": eps,
        "theta": prob.theta.tolist(),
        "posterior": prob.posterior.tolist(),
        "lyapunov": sgd_bayes.stationary_covariance(prob.A, prob.C, eps=eps, batch_size=S).tolist(),
        "iterates": iterates.tolist(),
        "kl_sgd": float(prob.kl_of(torch.cov(iterates.T))),
        "cov_error_sgd": float(_rel(torch.cov(iterates.T), prob.posterior)),
        "blr_track": track,
        "kl_blr": float(sgd_bayes.gaussian_kl(m, cov, prob.theta, prob.posterior)),
        "cov_error_blr": float(_rel(cov, prob.posterior)),
        "rho_last": 1 / (n_blr + 1),
        "n_data": N,
        "blr_step_in_eps_units": step.tolist(),
    }
