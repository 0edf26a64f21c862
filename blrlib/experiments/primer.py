"""The approximate-inference primer: each approximation of a 2-D posterior against HMC.

    from blrlib import experiments
    record = experiments.run("primer_logreg2d", scale="ci")
    record["result"]["errors"]["laplace_mc"]   # error to HMC of the Laplace approximation
    record["result"]["diagnostics"]            # R-hat, ESS and divergences of the HMC run

Nothing is tuned here: the prior precision is the generator's (w ~ N(0, I), delta = 1), and
VI runs to convergence from the MAP. The networks are in :mod:`blrlib.experiments.primer_nets`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from blrlib import _checks, data, infer, metrics
from blrlib.experiments import protocol
from blrlib.experiments._registry import Scale, register
from blrlib.infer import mcmc, predictive
from blrlib.infer.gaussian import GaussianPosterior
from blrlib.infer.laplace import laplace
from blrlib.infer.map import fit_map
from blrlib.infer.vi import fit_vi

__all__ = ["primer_logreg2d"]

F64 = torch.float64


def _grid(lo: float, hi: float, n: int, device: torch.device) -> Tensor:
    """An n x n grid over [lo, hi]^2 as points of shape (n * n, 2)."""
    axis = torch.linspace(lo, hi, n, dtype=F64, device=device)
    g1, g2 = torch.meshgrid(axis, axis, indexing="xy")
    return torch.stack([g1.reshape(-1), g2.reshape(-1)], -1)


def _scores(probs: Tensor, y: Tensor, reference: Tensor | None) -> dict[str, float]:
    out = {
        "nll": metrics.nll(probs, y),
        "ece": metrics.ece(probs, y),
        "accuracy": metrics.accuracy(probs, y),
    }
    if reference is not None:
        out["predictive_error"] = float((probs - reference).abs().mean())
    out["confidence"] = float((probs - 0.5).abs().mean())  # mean |p - 1/2|
    return out


def _log_joint(X: Tensor, y: Tensor, delta: float) -> Callable[[Tensor], Tensor]:
    """HMC's target, log p(y, theta | X) up to a constant, for thetas (C, P), written out:

    sum_i [y_i f_i - log(1 + exp(f_i))] - delta |theta|^2 / 2 with f_i = theta^T x_i. It shares
    no code with ``BayesModel``, which the approximations use, and costs about a quarter of
    ``mcmc.log_prob_fn``'s time per gradient on this 2-D problem.
    """

    def log_prob(thetas: Tensor) -> Tensor:
        f = thetas @ X.T  # (C, N)
        return (y * f - F.softplus(f)).sum(-1) - 0.5 * delta * (thetas * thetas).sum(-1)

    return log_prob


def _shape(samples: Tensor, mode: Tensor) -> dict[str, float]:
    """How the posterior departs from a Gaussian at its mode, along the direction of the mode.

    With u = theta* / |theta*| and z = u^T theta over the draws: the gap between the posterior
    mean and the mode in posterior standard deviations, (E[z] - u^T theta*) / sd(z), and the
    sample skewness E[(z - E z)^3] / sd(z)^3. Both are 0 for a Gaussian centred at the mode.
    """
    u = mode / mode.norm()
    z = samples @ u
    sd = z.std()
    return {
        "mean_minus_mode_sd": float((z.mean() - mode @ u) / sd),
        "skewness": float(((z - z.mean()) ** 3).mean() / sd**3),
    }


@register
def primer_logreg2d(
    *, scale: Scale, device: torch.device, seed: int = 0, n_train: int = 40
) -> dict[str, Any]:
    """2-D Bayesian logistic regression: MAP, Laplace and VI against an HMC ground truth.

    ``n_train`` generated points for fitting and 2000 for testing. Besides each method's errors
    to HMC (``errors``), it reports the posterior's departure from a Gaussian at its mode
    (``shape``, see :func:`_shape`), each predictive's mean confidence |p - 1/2| on the test
    points (in ``errors``), and, as ``hmc_gaussian_mc``, the predictive of the Gaussian with
    HMC's own mean and covariance.

    Raises:
        ValueError: ``n_train`` below 2.
    """
    n_train = _checks.count(n_train, "n_train", minimum=2)
    n_test = 2000
    n_chains, n_draws, n_warmup, n_leapfrog = protocol.by_scale(
        scale, ci=(4, 1000, 400, 6), full=(16, 10_000, 2000, 20)
    )  # the 2-D posterior is easy: 6 leapfrog steps keep the bulk ESS near 1000 at ci scale
    vi_steps = protocol.by_scale(scale, ci=1500, full=5000)
    gen = torch.Generator(device=device).manual_seed(seed)
    X_all, y_all = data.logistic_regression(
        n_train + n_test, 2, seed=seed, dtype=F64, device=device
    )
    X, y, X_test, y_test = X_all[:n_train], y_all[:n_train], X_all[n_train:], y_all[n_train:]
    bm = infer.BayesModel(
        nn.Linear(2, 1, bias=False, dtype=F64, device=device), "bernoulli", prior_precision=1.0
    )
    # the loss is strictly convex, so the start only has to be fixed, not good
    theta_map = fit_map(bm, X, y, theta0=torch.zeros(2, dtype=F64, device=device))
    vi = {"n_steps": vi_steps, "lr": 2e-2, "final_lr": 1e-3, "n_samples": 16}
    approx = {
        "laplace": laplace(bm, X, y, theta_map),
        "vi_full": fit_vi(bm, X, y, structure="full", init=theta_map, generator=gen, **vi)[0],
        "vi_diag": fit_vi(bm, X, y, structure="diag", init=theta_map, generator=gen, **vi)[0],
    }
    init = theta_map + 0.5 * torch.randn(n_chains, 2, generator=gen, dtype=F64, device=device)
    idata = mcmc.hmc(
        _log_joint(X, y, bm.prior_precision),
        init,
        n_samples=n_draws,
        n_warmup=n_warmup,
        n_leapfrog=n_leapfrog,
        generator=gen,
    )
    samples = mcmc.draws(idata)
    hmc_mean, hmc_cov = samples.mean(0), torch.cov(samples.T)
    hmc_gaussian = GaussianPosterior.from_mean_precision(hmc_mean, torch.linalg.inv(hmc_cov))

    grid = _grid(-4.0, 4.0, 60, device)
    predictions: dict[str, dict[str, Tensor]] = {"test": {}, "grid": {}}
    for where, inputs in (("test", X_test), ("grid", grid)):
        predictions[where]["hmc"] = predictive.mc(bm, inputs, samples)
        predictions[where]["map"] = torch.sigmoid(bm.forward(theta_map, inputs))
        predictions[where]["laplace_probit"] = predictive.predict(
            bm, inputs, approx["laplace"], method="probit"
        )
        for name, q in (*approx.items(), ("hmc_gaussian", hmc_gaussian)):
            predictions[where][f"{name}_mc"] = predictive.predict(
                bm, inputs, q, method="mc", n_samples=4000, generator=gen
            )

    errors = {}
    for name, probs in predictions["test"].items():
        errors[name] = _scores(probs, y_test, None if name == "hmc" else predictions["test"]["hmc"])
        q = approx.get(name.removesuffix("_mc").removesuffix("_probit"))
        if q is not None:
            cov = torch.diag(q.cov) if q.diagonal else q.cov
            errors[name]["mean_error"] = float((q.mean - hmc_mean).norm())
            errors[name]["cov_error"] = float((cov - hmc_cov).norm() / hmc_cov.norm())
    errors["map"]["mean_error"] = float((theta_map - hmc_mean).norm())
    return {
        "X": X.tolist(),
        "y": y.tolist(),
        "theta_map": theta_map.tolist(),
        "hmc_chains": samples.reshape(n_chains, n_draws, 2)[:, :: max(1, n_draws // 1000)].tolist(),
        "hmc_mean": hmc_mean.tolist(),
        "hmc_cov": hmc_cov.tolist(),
        "diagnostics": mcmc.diagnostics(idata),
        "shape": _shape(samples, theta_map),
        "approximations": {
            name: {
                "mean": q.mean.tolist(),
                "cov": (torch.diag(q.cov) if q.diagonal else q.cov).tolist(),
            }
            for name, q in approx.items()
        },
        "grid": grid.tolist(),
        "grid_predictions": {k: v.tolist() for k, v in predictions["grid"].items()},
        "errors": errors,
    }
