"""The approximate-inference primer: each approximation against HMC, and on small networks.

from blrlib import experiments
record = experiments.run("primer_logreg2d", scale="ci")
record["result"]["errors"]["laplace_mc"]   # error to HMC of the Laplace approximation
record = experiments.run("primer_networks", scale="ci")
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from blrlib import data, infer, metrics
from blrlib.experiments._registry import Scale, register
from blrlib.infer import dropout, mcmc, predictive
from blrlib.infer.laplace import laplace
from blrlib.infer.map import fit_map
from blrlib.infer.vi import fit_vi

__all__ = ["primer_logreg2d", "primer_networks", "primer_tabular"]

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
    return out


@register
def primer_logreg2d(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """2-D Bayesian logistic regression: MAP, Laplace and VI against an HMC ground truth."""
    n_train, n_test = 40, 2000
    ci = scale is Scale.CI
    n_chains, n_draws, n_warmup = (4, 1000, 400) if ci else (16, 10_000, 2000)
    gen = torch.Generator(device=device).manual_seed(seed)
    X_all, y_all = data.logistic_regression(
        n_train + n_test, 2, seed=seed, dtype=F64, device=device
    )
    X, y, X_test, y_test = X_all[:n_train], y_all[:n_train], X_all[n_train:], y_all[n_train:]
    bm = infer.BayesModel(
        nn.Linear(2, 1, bias=False, dtype=F64, device=device), "bernoulli", prior_precision=1.0
    )

    theta_map = fit_map(bm, X, y)
    approx = {
        "laplace": laplace(bm, X, y, theta_map),
        "vi_full": fit_vi(
            bm,
            X,
            y,
            structure="full",
            n_steps=1500 if ci else 5000,
            lr=2e-2,
            final_lr=1e-3,
            n_samples=16,
            init=theta_map,
            generator=gen,
        )[0],
        "vi_diag": fit_vi(
            bm,
            X,
            y,
            structure="diag",
            n_steps=1500 if ci else 5000,
            lr=2e-2,
            final_lr=1e-3,
            n_samples=16,
            init=theta_map,
            generator=gen,
        )[0],
    }
    init = theta_map + 0.5 * torch.randn(n_chains, 2, generator=gen, dtype=F64, device=device)
    idata = mcmc.hmc(
        mcmc.log_prob_fn(bm, X, y),
        init,
        n_samples=n_draws,
        n_warmup=n_warmup,
        n_leapfrog=6 if ci else 20,  # the 2-D posterior is easy; 6 steps keep ESS > 1000
        generator=gen,
    )
    samples = mcmc.draws(idata)
    hmc_mean, hmc_cov = samples.mean(0), torch.cov(samples.T)
    diagnostics = mcmc.diagnostics(idata)

    grid = _grid(-4.0, 4.0, 60, device)
    predictions: dict[str, dict[str, Tensor]] = {"test": {}, "grid": {}}
    for where, inputs in (("test", X_test), ("grid", grid)):
        predictions[where]["hmc"] = predictive.mc(bm, inputs, samples)
        predictions[where]["map"] = torch.sigmoid(bm.forward(theta_map, inputs))
        predictions[where]["laplace_probit"] = predictive.predict(
            bm, inputs, approx["laplace"], method="probit"
        )
        for name, q in approx.items():
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
        "diagnostics": diagnostics,
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


def _mlp(sizes: list[int], *, p_drop: float, activation: type[nn.Module], device) -> nn.Sequential:
    """An MLP; with p_drop > 0, dropout after every hidden activation (Gal & Ghahramani)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b, dtype=F64, device=device))
        if i < len(sizes) - 2:
            layers.append(activation())
            if p_drop > 0:
                layers.append(nn.Dropout(p_drop))
    return nn.Sequential(*layers)


def _last_layer(net: nn.Sequential) -> list[str]:
    index = max(i for i, m in enumerate(net) if isinstance(m, nn.Linear))
    return [f"{index}.weight", f"{index}.bias"]


def _fit_all(
    X,
    y,
    X_eval,
    *,
    likelihood,
    sizes,
    activation,
    prior_precision,
    noise_precision,
    p_drop,
    n_steps,
    gen,
    device,
) -> dict[str, Any]:
    """MAP, last-layer Laplace, mean-field VI and MC dropout on one data set.

    Returns the predictive at ``X_eval`` of each method: probabilities (classification) or
    (mean, variance) (regression).
    """
    torch.manual_seed(int(torch.randint(0, 2**31, (), generator=gen)))
    net = _mlp(sizes, p_drop=0.0, activation=activation, device=device)
    bm = infer.BayesModel(
        net, likelihood, prior_precision=prior_precision, noise_precision=noise_precision
    )
    # The MAP of a network: Adam on bar-ell / N (L-BFGS stalls on ReLU kinks), then the last
    # layer, where the loss is convex, polished to a true minimum for its Laplace approximation.
    theta = bm.theta0().requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=1e-2)
    for _ in range(n_steps):
        optimizer.zero_grad()
        (bm.loss(theta, X, y) / len(X)).backward()
        optimizer.step()
    bm.load(theta.detach())
    last = infer.BayesModel(
        net,
        likelihood,
        prior_precision=prior_precision,
        noise_precision=noise_precision,
        parameters=_last_layer(net),
    )
    # ReLU features make the last layer's problem ill-conditioned: L-BFGS stalls near a gradient
    # of 1e-5 on a loss of order 100, far below what moves the Laplace approximation
    last.load(fit_map(last, X, y, max_iter=2000, tol=1e-4))
    theta_map = bm.theta0()
    out: dict[str, Any] = {}
    if likelihood == "gaussian":
        f = bm.forward(theta_map, X_eval)
        out["map"] = (f, torch.full_like(f, 1 / noise_precision))
    else:
        out["map"] = torch.sigmoid(bm.forward(theta_map, X_eval))
    last = infer.BayesModel(
        net,
        likelihood,
        prior_precision=prior_precision,
        noise_precision=noise_precision,
        parameters=_last_layer(net),
    )
    q_last = laplace(last, X, y, last.theta0(), curvature="ggn")
    out["laplace_last_layer"] = predictive.predict(last, X_eval, q_last, method="probit")
    q_vi, _ = fit_vi(
        bm,
        X,
        y,
        structure="diag",
        n_steps=n_steps,
        lr=1e-2,
        final_lr=1e-3,
        n_samples=8,
        init=theta_map,
        generator=gen,
    )
    out["vi"] = predictive.predict(bm, X_eval, q_vi, method="mc", n_samples=500, generator=gen)
    drop_net = _mlp(sizes, p_drop=p_drop, activation=activation, device=device)
    dropout.fit_dropout(
        drop_net,
        X,
        y,
        likelihood=likelihood,
        prior_precision=prior_precision,
        noise_precision=noise_precision,
        n_steps=n_steps,
    )
    out["mc_dropout"] = dropout.mc_dropout_predict(
        drop_net,
        X_eval,
        likelihood=likelihood,
        n_samples=200,
        noise_precision=noise_precision if likelihood == "gaussian" else None,
    )
    if likelihood != "gaussian":
        out["mc_dropout"] = out["mc_dropout"][0]
    return out


def _to_lists(predictions: dict[str, Any]) -> dict[str, Any]:
    return {
        k: [t.tolist() for t in v] if isinstance(v, tuple) else v.tolist()
        for k, v in predictions.items()
    }


@register
def primer_networks(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Two moons and y = sin(x) + x with MAP, MC dropout, last-layer Laplace and mean-field VI."""
    ci = scale is Scale.CI
    gen = torch.Generator(device=device).manual_seed(seed)
    hidden = [32, 32] if ci else [128, 128]
    n_steps = 1500 if ci else 5000

    X, y = data.two_moons(200 if ci else 2000, noise=0.15, seed=seed, dtype=F64, device=device)
    grid = _grid(-2.5, 3.5, 50, device)
    moons = _fit_all(
        X,
        y,
        grid,
        likelihood="bernoulli",
        sizes=[2, *hidden, 1],
        activation=nn.Tanh,
        prior_precision=1.0,
        noise_precision=1.0,
        p_drop=0.1,
        n_steps=n_steps,
        gen=gen,
        device=device,
    )

    x, t = data.sin_regression(
        100 if ci else 1000, noise=0.1, seed=seed + 1, dtype=F64, device=device
    )
    line = torch.linspace(-10.0, 10.0, 401, dtype=F64, device=device).unsqueeze(-1)
    sin = _fit_all(
        x,
        t,
        line,
        likelihood="gaussian",
        sizes=[1, *hidden, 1],
        activation=nn.ReLU,
        prior_precision=1.0,
        noise_precision=100.0,
        p_drop=0.05,
        n_steps=n_steps,
        gen=gen,
        device=device,
    )
    return {
        "moons": {
            "X": X.tolist(),
            "y": y.tolist(),
            "grid": grid.tolist(),
            "predictions": _to_lists(moons),
        },
        "sin": {
            "x": x[:, 0].tolist(),
            "y": t.tolist(),
            "line": line[:, 0].tolist(),
            "predictions": _to_lists(sin),
        },
    }


def _tabular_scores(likelihood: str, prediction: Any, y: Tensor) -> dict[str, float]:
    """Test-set scores of one method: NLL and accuracy / ECE, or NLL and RMSE."""
    if likelihood == "gaussian":
        mean, var = prediction
        return {
            "nll": metrics.gaussian_nll(mean, var, y),
            "rmse": float(((mean - y) ** 2).mean().sqrt()),
        }
    return {
        "nll": metrics.nll(prediction, y),
        "accuracy": metrics.accuracy(prediction, y),
        "ece": metrics.ece(prediction, y),
    }


@register
def primer_tabular(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """scikit-learn's breast-cancer and diabetes sets: MAP, MC dropout, Laplace, VI over seeds."""
    ci = scale is Scale.CI
    n_seeds, hidden, n_steps = (1, [32], 1000) if ci else (10, [128, 128], 5000)
    sets = {
        # the diabetes targets are standardised; a noise precision of 2 (sd 0.7) is about the
        # residual of a linear fit (R^2 about 0.5)
        "breast_cancer": (data.breast_cancer(dtype=F64), "bernoulli", 1.0),
        "diabetes": (data.diabetes(dtype=F64), "gaussian", 2.0),
    }
    out: dict[str, Any] = {}
    for name, ((X, y), likelihood, tau) in sets.items():
        X, y = X.to(device), y.to(device)
        if likelihood == "gaussian":
            y = (y - y.mean()) / y.std()
        runs = []
        for s in range(seed, seed + n_seeds):
            gen = torch.Generator(device=device).manual_seed(s)
            order = torch.randperm(len(X), generator=gen, device=device)
            train, test = order[: int(0.8 * len(X))], order[int(0.8 * len(X)) :]
            predictions = _fit_all(
                X[train],
                y[train],
                X[test],
                likelihood=likelihood,
                sizes=[X.shape[1], *hidden, 1],
                activation=nn.ReLU,
                prior_precision=1.0,
                noise_precision=tau,
                p_drop=0.1,
                n_steps=n_steps,
                gen=gen,
                device=device,
            )
            runs.append(
                {
                    method: _tabular_scores(likelihood, p, y[test])
                    for method, p in predictions.items()
                }
            )
        out[name] = {"likelihood": likelihood, "runs": runs}
    return out
