"""The SGD chapter, part 1 continued: SGLD, SGFS and momentum SGD as samplers of a known posterior.

On the Bayesian linear regression of ``experiments.sgd`` (the same chains, sizes and jackknife),
each sampler's empirical stationary covariance against the exact one of its iteration: SGLD's
excess over the posterior against eps, SGFS at finite eps, and the heavy ball (Result 4 of
:ref:`sgd-samplers`).

    from blrlib import experiments
    record = experiments.run("sgd_samplers", scale="ci")
    record["result"]["sgld"]["slope_ratio"]   # SGLD's excess against eps: measured / predicted
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from blrlib import sgd_bayes
from blrlib.experiments._registry import Scale, register
from blrlib.experiments.sgd import F64, Problem, _cov, _rel, _sizes, jackknife, regression

__all__ = ["sgd_samplers"]


def _posterior_draws(prob: Problem, k: int, gen: torch.Generator) -> Tensor:
    """k draws from the exact posterior, (k, P): chains that start in the right place, so
    that only the sampler's own excess covariance has to build up during the burn-in."""
    z = torch.randn(k, prob.X.shape[1], generator=gen, dtype=F64, device=prob.X.device)
    return prob.theta + z @ torch.linalg.cholesky(prob.posterior).T


def _against(prob: Problem, x: Tensor, pred: Tensor) -> dict[str, Any]:
    """The empirical covariance of samples x (T, K, P) against a prediction, with its MC noise."""
    cov, cov_se = jackknife(lambda xs: _cov(xs[0]), [x])
    kl, kl_se = jackknife(lambda xs: prob.kl_of(_cov(xs[0])), [x])
    return {
        "empirical": cov.tolist(),
        "predicted": pred.tolist(),
        "error": float(_rel(cov, pred)),
        "noise": float(torch.linalg.norm(cov_se) / torch.linalg.norm(pred)),
        "kl_empirical": float(kl),
        "kl_se": float(kl_se),
        "kl_predicted": float(prob.kl_of(pred)),
    }


@register
def sgd_samplers(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Result 4: SGLD's bias against eps, SGFS and momentum SGD at finite learning rates."""
    z = _sizes(scale)
    prob = regression(z["n"], z["dim"], seed=seed, device=device)
    S, N = z["batch"], prob.n
    eps_star = sgd_bayes.optimal_learning_rate(prob.C, batch_size=S, n_data=N)
    loss = sgd_bayes.minibatch_loss(prob.model, prob.X, prob.y)
    gen = torch.Generator(device=device).manual_seed(seed + 3)
    per, steps = 3 * z["group"], z["burn"] + z["kept"]
    factors = [0.5, 1.0, 2.0]
    sgld = sgd_bayes.run_chains(
        loss,
        _posterior_draws(prob, 3 * per, gen),
        n_data=N,
        batch_size=S,
        eps=torch.tensor(factors, dtype=F64, device=device).repeat_interleave(per) * eps_star,
        n_steps=steps,
        burn_in=z["burn"],
        sampler="sgld",
        thin=10,
        generator=gen,
    )
    groups = list(sgld.samples.split(per, dim=1))
    out: dict[str, Any] = {
        "eps_star": eps_star,
        "eps_lambda_max": eps_star * float(torch.linalg.eigvalsh(prob.A)[-1]),
        "posterior": prob.posterior.tolist(),
    }
    out["sgld"] = _sgld(prob, groups, [f * eps_star for f in factors], S)
    out["sgld"]["factors"] = factors
    out["sgfs"] = {"eps": [0.5, 50.0], "runs": []}
    for eps in out["sgfs"]["eps"]:
        chains = sgd_bayes.run_chains(
            loss,
            _posterior_draws(prob, per, gen),
            n_data=N,
            batch_size=S,
            eps=eps,
            n_steps=steps // 3,
            burn_in=steps // 10,  # K A is at most about (2 S / N) I: mixes in ~N / (4 S) steps
            sampler="sgfs",
            fisher=prob.C,
            thin=5,
            generator=gen,
        )
        K, Q = sgd_bayes.sgfs_step(prob.C, eps=eps, batch_size=S, n_data=N)
        pred = prob.exact(1.0, S, preconditioner=K, injected=Q)
        out["sgfs"]["runs"].append(_against(prob, chains.samples, pred))
    mu = 0.9
    momentum = sgd_bayes.run_chains(
        loss,
        prob.chains(per),
        n_data=N,
        batch_size=S,
        eps=(1 - mu) * eps_star,
        momentum=mu,
        n_steps=steps,
        burn_in=z["burn"],
        thin=10,
        generator=gen,
    )
    pred = sgd_bayes.stationary_covariance(
        prob.A, prob.C, eps=(1 - mu) * eps_star, batch_size=S, momentum=mu, discrete=True
    )
    plain = sgd_bayes.stationary_covariance(prob.A, prob.C, eps=eps_star, batch_size=S)
    out["momentum"] = {
        "momentum": mu,
        **_against(prob, momentum.samples, pred),
        "sgd_at_eps_star": plain.tolist(),
        "error_sgd": float(_rel(_cov(momentum.samples), plain)),
        "gap_theory": float(_rel(pred, plain)),  # discrete momentum vs continuous plain SGD
    }
    return out


def _sgld(prob: Problem, groups: list[Tensor], eps: list[float], S: int) -> dict[str, Any]:
    """SGLD's excess over the posterior, tr(A Sigma) - P / N, against eps.

    The continuous theory gives Sigma = (N A)^-1 + Sigma_SGD(eps), and the trace of the
    Lyapunov equation tr(A Sigma_SGD) = eps tr C / (2 S): the excess is linear in eps.
    """
    P, N = prob.X.shape[1], prob.n
    slope = float(prob.C.trace()) / (2 * S)
    e = torch.tensor(eps, dtype=F64, device=prob.X.device)
    eye = torch.eye(P, dtype=F64, device=prob.X.device)
    preds = [prob.exact(x, S, injected=sgd_bayes.sgld_noise(eye, eps=x, n_data=N)) for x in eps]

    def excess(covs: list[Tensor]) -> Tensor:
        return torch.stack([torch.trace(prob.A @ c) - P / N for c in covs])

    def stats(xs: list[Tensor]) -> Tensor:
        ex = excess([_cov(x) for x in xs])
        fit = (ex * e).sum() / (e * e).sum()  # least squares through the origin
        return torch.cat([ex, (ex[1:] / ex[:-1]), fit[None] / slope])

    value, se = jackknife(stats, groups)
    theory = excess(preds)
    fit_theory = (theory * e).sum() / (e * e).sum() / slope
    n = len(eps)
    return {
        "eps": eps,
        "excess_empirical": value[:n].tolist(),
        "excess_se": se[:n].tolist(),
        "excess_exact": theory.tolist(),
        "excess_continuous": (slope * e).tolist(),
        "ratios": value[n:-1].tolist(),
        "ratios_se": se[n:-1].tolist(),
        "ratios_exact": (theory[1:] / theory[:-1]).tolist(),
        "slope_ratio": float(value[-1]),  # fitted slope / the continuous one, tr C / (2 S)
        "slope_ratio_se": float(se[-1]),
        "slope_ratio_exact": float(fit_theory),
        "runs": [_against(prob, x, p) for x, p in zip(groups, preds, strict=True)],
    }
