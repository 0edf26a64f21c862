"""The primer's networks: MAP, last-layer Laplace, mean-field VI and MC dropout, tuned alike.

    from blrlib import experiments
    record = experiments.run("primer_networks", scale="ci")
    record["result"]["ratios"]["mc_dropout"]   # sd far from the data / sd inside, over seeds
    record = experiments.run("primer_tabular", scale="ci")
    print(experiments.primer_nets.tabular_table(record["result"]))

Every method gets the same tuning budget (``protocol.tune_all``): three settings, each scored
by its validation NLL on a split carved from the training data. MAP, last-layer Laplace and
mean-field VI tune the prior precision delta; Laplace and VI at a given delta start from the
MAP network trained with that delta. MC dropout tunes its rate p. The winners are the models
shown, and ``primer_tabular`` scores them once on a test split.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from blrlib import blr, data, metrics
from blrlib.experiments import protocol
from blrlib.experiments._registry import Scale, register
from blrlib.experiments.primer import _grid
from blrlib.infer import dropout, predictive
from blrlib.infer.laplace import laplace
from blrlib.infer.model import BayesModel
from blrlib.infer.vi import fit_vi

__all__ = ["GRIDS", "METHODS", "primer_networks", "primer_tabular", "tabular_table"]

F64 = torch.float64
METHODS = ("map", "laplace_last_layer", "vi", "mc_dropout")
# The grids: delta for MAP, Laplace and VI; p for MC dropout (with delta = 1). The tabular
# networks (10 or 30 inputs, a few hundred rows) need more regularisation than the 2-D toys:
# on diabetes their validation NLL still falls at delta = 10 and p = 0.1, the upper edges of
# the toys' grids.
GRIDS = {
    "toy": {"prior_precision": [0.1, 1.0, 10.0], "p_drop": [0.01, 0.03, 0.1]},
    "tabular": {"prior_precision": [1.0, 10.0, 100.0], "p_drop": [0.03, 0.1, 0.3]},
}
Predictor = Callable[[Tensor], Any]
_NEWTON_STEPS = 20  # the most Newton steps on the last layer (about five are needed)


@dataclass(frozen=True)
class Setup:
    """What every method on one data set shares: the model, its likelihood and the budget."""

    likelihood: str
    sizes: list[int]
    activation: type[nn.Module]
    noise_precision: float
    n_steps: int  # full-batch Adam steps for MAP, dropout and VI
    init_seed: int  # every network starts from the same weights
    device: torch.device


def _mlp(setup: Setup, p_drop: float) -> nn.Sequential:
    """An MLP; with p_drop > 0, dropout after every hidden activation (Gal & Ghahramani)."""
    torch.manual_seed(setup.init_seed)
    layers: list[nn.Module] = []
    sizes = setup.sizes
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b, dtype=F64, device=setup.device))
        if i < len(sizes) - 2:
            layers.append(setup.activation())
            if p_drop > 0:
                layers.append(nn.Dropout(p_drop))
    return nn.Sequential(*layers)


def _model(setup: Setup, net: nn.Sequential, delta: float, *, last: bool) -> BayesModel:
    """The network as a BayesModel; with ``last``, only its last linear layer is random."""
    names = None
    if last:
        index = max(i for i, m in enumerate(net) if isinstance(m, nn.Linear))
        names = [f"{index}.weight", f"{index}.bias"]
    return BayesModel(
        net,
        setup.likelihood,
        prior_precision=delta,
        noise_precision=setup.noise_precision,
        parameters=names,
    )


def _newton_last_layer(setup: Setup, net: nn.Sequential, X, y, delta: float) -> None:
    """Take the last layer to its exact minimum by Newton's method, in place.

    Newton's method is the BLR's step at rho = 1 with the delta method (Khan & Rue 2023, Sec
    1.3.2). The last layer's loss is convex (linear outputs, canonical link), so the steps
    converge from anywhere: exactly in one step for a Gaussian likelihood, to rounding within
    about five for a Bernoulli one. L-BFGS is no substitute: on ReLU features with a small
    delta it stalls with gradients of 1e-2.
    """
    last = _model(setup, net, delta, last=True)
    q = laplace(last, X, y, last.theta0(), curvature="ggn")
    lam, mean = q.lam, q.mean
    for _ in range(_NEWTON_STEPS):
        lam = blr.step(q.family, lam, last.sum_loss(X, y), rho=1.0, estimator="delta")
        new = q.family.mean_cov(lam)[0]
        done = bool(((new - mean).abs() <= 1e-12 * (1 + mean.abs())).all())
        mean = new
        if done:
            break
    last.load(mean)


@dataclass(frozen=True)
class Fitted:
    """A trained method: its predictive ``X -> prediction`` and how far training still moved.

    ``drift`` is the mean training objective per point (bar-ell / N for MAP, the dropout loss,
    -ELBO / N for VI) over the last tenth of the steps minus that over the tenth before: about
    0 once training has converged, negative while it still improves. Laplace trains nothing.
    """

    predict: Predictor
    drift: float | None = None


def _drift(trace: Tensor) -> float:
    tenth = max(1, len(trace) // 10)
    return float(trace[-tenth:].mean() - trace[-2 * tenth : -tenth].mean())


def _train_map(setup: Setup, X: Tensor, y: Tensor, delta: float) -> tuple[nn.Sequential, float]:
    """The MAP network and its drift: full-batch Adam on bar-ell / N, then Newton on the last layer.

    L-BFGS stalls on ReLU kinks, so the whole network is trained by Adam; the last layer is then
    taken to its exact minimum (:func:`_newton_last_layer`), where its Laplace approximation is
    centred.
    """
    net = _mlp(setup, 0.0)
    bm = _model(setup, net, delta, last=False)
    theta = bm.theta0().requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=1e-2)
    trace = torch.empty(setup.n_steps, dtype=F64)
    for t in range(setup.n_steps):
        optimizer.zero_grad()
        loss = bm.loss(theta, X, y) / len(X)
        loss.backward()
        optimizer.step()
        trace[t] = loss.detach()
    bm.load(theta.detach())
    _newton_last_layer(setup, net, X, y, delta)
    return net, _drift(trace)


def _map_fit(setup: Setup, net: nn.Sequential, drift: float) -> Fitted:
    bm = _model(setup, net, 1.0, last=False)  # the prior plays no part in the plug-in
    theta = bm.theta0()

    def predict(X: Tensor) -> Any:
        f = bm.forward(theta, X)
        if setup.likelihood == "gaussian":
            return f, torch.full_like(f, 1 / setup.noise_precision)
        return torch.sigmoid(f)

    return Fitted(predict, drift)


def _laplace_fit(setup: Setup, net: nn.Sequential, X, y, delta: float) -> Fitted:
    """Last-layer Laplace with the generalised Gauss-Newton precision, probit predictive."""
    last = _model(setup, net, delta, last=True)
    q = laplace(last, X, y, last.theta0(), curvature="ggn")
    return Fitted(lambda X_eval: predictive.predict(last, X_eval, q, method="probit"))


def _vi_fit(setup: Setup, net, X, y, delta: float, gen: torch.Generator) -> Fitted:
    """Mean-field VI over every weight, started at the MAP network of the same delta.

    Adam's learning rate decays from 1e-2 to 1e-3 (from 5e-2, the two-moons fits lose their
    shape: validation NLL 0.29-0.39 instead of 0.05-0.09 at ci scale).
    """
    bm = _model(setup, net, delta, last=False)
    q, trace = fit_vi(
        bm,
        X,
        y,
        structure="diag",
        n_steps=setup.n_steps,
        lr=1e-2,
        final_lr=1e-3,
        n_samples=8,
        init=bm.theta0(),
        generator=gen,
    )

    def predict(X_eval: Tensor) -> Any:
        return predictive.predict(bm, X_eval, q, method="mc", n_samples=500, generator=gen)

    return Fitted(predict, _drift(-trace / len(X)))


def _dropout_fit(setup: Setup, X, y, p_drop: float) -> Fitted:
    """A network trained with dropout at rate p (delta = 1), predicting with 200 passes."""
    net = _mlp(setup, p_drop)
    gaussian = setup.likelihood == "gaussian"
    trace = dropout.fit_dropout(
        net,
        X,
        y,
        likelihood=setup.likelihood,
        prior_precision=1.0,
        noise_precision=setup.noise_precision,
        n_steps=setup.n_steps,
    )

    def predict(X_eval: Tensor) -> Any:
        mean, var = dropout.mc_dropout_predict(
            net,
            X_eval,
            likelihood=setup.likelihood,
            n_samples=200,
            noise_precision=setup.noise_precision if gaussian else None,
        )
        return (mean, var) if gaussian else mean

    return Fitted(predict, _drift(torch.tensor(trace, dtype=F64)))


def validation_nll(likelihood: str, prediction: Any, y: Tensor) -> float:
    """The mean NLL of a predictive: probabilities, or (mean, variance) for ``gaussian``."""
    if likelihood == "gaussian":
        return metrics.gaussian_nll(*prediction, y)
    return metrics.nll(prediction, y)


def tune_methods(
    setup: Setup,
    train: tuple[Tensor, Tensor],
    *,
    val: tuple[Tensor, Tensor],
    grids: dict[str, list[float]],
    gen: torch.Generator,
) -> dict[str, protocol.Tuned]:
    """Tune the four methods on ``val``, three settings each (``protocol.tune_all``).

    ``grids["prior_precision"]`` serves MAP, Laplace and VI, ``grids["p_drop"]`` MC dropout.

    Returns:
        ``method -> Tuned``, whose payload is the winner's :class:`Fitted`.
    """
    X, y = train

    @functools.cache
    def map_net(delta: float) -> tuple[nn.Sequential, float]:  # for MAP, Laplace and VI
        return _train_map(setup, X, y, delta)

    builders: dict[str, Callable[[dict[str, Any]], Fitted]] = {
        "map": lambda hp: _map_fit(setup, *map_net(hp["prior_precision"])),
        "laplace_last_layer": lambda hp: _laplace_fit(
            setup, map_net(hp["prior_precision"])[0], X, y, hp["prior_precision"]
        ),
        "vi": lambda hp: _vi_fit(
            setup, map_net(hp["prior_precision"])[0], X, y, hp["prior_precision"], gen
        ),
        "mc_dropout": lambda hp: _dropout_fit(setup, X, y, hp["p_drop"]),
    }
    grid = {m: {"prior_precision": grids["prior_precision"]} for m in METHODS}
    grid["mc_dropout"] = {"p_drop": grids["p_drop"]}

    def objective(method: str) -> Callable[[dict[str, Any]], tuple[float, Fitted]]:
        def score(hp: dict[str, Any]) -> tuple[float, Fitted]:
            fitted = builders[method](hp)
            return validation_nll(setup.likelihood, fitted.predict(val[0]), val[1]), fitted

        return score

    return protocol.tune_all({m: (objective(m), grid[m]) for m in METHODS})


def _report(tuned: dict[str, protocol.Tuned]) -> dict[str, Any]:
    """Each method's tuning table and the drift of its winner."""
    return {m: {**t.as_dict(), "drift": t.payload.drift} for m, t in tuned.items()}


def _lists(prediction: Any) -> Any:
    if isinstance(prediction, tuple):
        return [t.tolist() for t in prediction]
    return prediction.tolist()


def _sd_ratio(prediction: tuple[Tensor, Tensor], line: Tensor) -> float:
    """Mean predictive sd at |x| > 6 over that at |x| < 3 (the data lie in [-3, 3])."""
    sd = prediction[1].sqrt()
    return float(sd[line.abs() > 6].mean() / sd[line.abs() < 3].mean())


@register
def primer_networks(
    *, scale: Scale, device: torch.device, seed: int = 0, n_seeds: int | None = None
) -> dict[str, Any]:
    """Two moons and y = sin(x) + x: MAP, last-layer Laplace, VI and MC dropout, tuned alike.

    Per seed, each method is tuned on a validation split (a fifth of the points) by its NLL;
    ``ratios`` reports, per method over seeds, the regression's predictive sd far from the data
    (|x| > 6) over that inside it (|x| < 3). The figures' predictions are those of the first
    seed. The noise precision of the regression is the generator's (noise sd 0.1, tau = 100).
    """
    # full: about 20 minutes on one CPU thread (VI's eight draws per step cost most)
    hidden = protocol.by_scale(scale, ci=[32, 32], full=[64, 64], gpu=[128, 128])
    n_moons, n_sin = protocol.by_scale(scale, ci=(200, 150), full=(600, 400), gpu=(2000, 1000))
    steps_moons, steps_sin = protocol.by_scale(
        scale, ci=(400, 800), full=(1000, 1500), gpu=(3000, 5000)
    )
    seeds = protocol.seeds(scale, base=seed, n_seeds=n_seeds, ci=1, full=5)
    grid = _grid(-2.5, 3.5, 50, device)
    line = torch.linspace(-10.0, 10.0, 401, dtype=F64, device=device).unsqueeze(-1)
    runs, shown = [], {}
    for s in seeds:
        gen = torch.Generator(device=device).manual_seed(s)
        X, y = data.two_moons(n_moons, noise=0.15, seed=s, dtype=F64, device=device)
        train, val = protocol.train_val_split(X, y, val_fraction=0.2, seed=s)
        setup = Setup("bernoulli", [2, *hidden, 1], nn.Tanh, 1.0, steps_moons, s, device)
        moons = tune_methods(setup, train, val=val, grids=GRIDS["toy"], gen=gen)
        x, t = data.sin_regression(n_sin, noise=0.1, seed=10_000 + s, dtype=F64, device=device)
        train_sin, val_sin = protocol.train_val_split(x, t, val_fraction=0.2, seed=s)
        setup = Setup("gaussian", [1, *hidden, 1], nn.ReLU, 100.0, steps_sin, s, device)
        sin = tune_methods(setup, train_sin, val=val_sin, grids=GRIDS["toy"], gen=gen)
        line_predictions = {m: sin[m].payload.predict(line) for m in METHODS}
        runs.append(
            {
                "seed": s,
                "ratios": {m: _sd_ratio(p, line[:, 0]) for m, p in line_predictions.items()},
                "tuning": {"moons": _report(moons), "sin": _report(sin)},
            }
        )
        if not shown:
            shown = {
                "moons": {
                    "X": train[0].tolist(),
                    "y": train[1].tolist(),
                    "grid": grid.tolist(),
                    "predictions": {m: _lists(moons[m].payload.predict(grid)) for m in METHODS},
                },
                "sin": {
                    "x": train_sin[0][:, 0].tolist(),
                    "y": train_sin[1].tolist(),
                    "line": line[:, 0].tolist(),
                    "predictions": {m: _lists(p) for m, p in line_predictions.items()},
                },
            }
    ratios = {m: protocol.summarise([r["ratios"][m] for r in runs]) for m in METHODS}
    return {"seeds": seeds, "ratios": ratios, "runs": runs, **shown}


def _test_scores(likelihood: str, prediction: Any, y: Tensor) -> dict[str, float]:
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


def _residual_precision(X: Tensor, y: Tensor) -> float:
    """1 / the residual variance of a least-squares linear fit with intercept (n - P - 1 dof)."""
    design = torch.cat([X, torch.ones_like(X[:, :1])], 1)
    coef = torch.linalg.lstsq(design, y.unsqueeze(-1)).solution
    resid = y - (design @ coef)[:, 0]
    return float((len(y) - design.shape[1]) / (resid * resid).sum())


@register
def primer_tabular(
    *, scale: Scale, device: torch.device, seed: int = 0, n_seeds: int | None = None
) -> dict[str, Any]:
    """scikit-learn's breast-cancer and diabetes sets: the four methods, tuned alike, over seeds.

    Per seed, a stratified (breast cancer) or plain (diabetes) split into train, validation
    (a fifth of the rest) and test (a fifth of the rows); inputs, and the diabetes targets, are
    standardised with the training split's statistics. Each method is tuned on validation
    (:func:`tune_methods`) and its winner scored once on test. The diabetes noise precision is
    1 / the residual variance of a linear fit to the training split, the same for every method.
    """
    # full: about 20 minutes on one CPU thread
    hidden = protocol.by_scale(scale, ci=[32], full=[64, 64], gpu=[128, 128])
    n_steps = protocol.by_scale(scale, ci=250, full=800, gpu=3000)
    seeds = protocol.seeds(scale, base=seed, n_seeds=n_seeds, ci=1, full=10)
    sets = {
        "breast_cancer": (data.breast_cancer(standardised=False, dtype=F64), "bernoulli"),
        "diabetes": (data.diabetes(standardised=False, dtype=F64), "gaussian"),
    }
    out: dict[str, Any] = {"seeds": seeds}
    for name, ((X, y), likelihood) in sets.items():
        X, y = X.to(device), y.to(device)
        runs, tuning = [], []
        for s in seeds:
            gen = torch.Generator(device=device).manual_seed(s)
            (Xtr, ytr), (Xva, yva), (Xte, yte) = protocol.split(
                X, y, test_fraction=0.2, val_fraction=0.2, seed=s
            )
            Xtr, Xva, Xte = data.standardise(Xtr, Xva, Xte)
            tau = 1.0
            if likelihood == "gaussian":
                ytr, yva, yte = data.standardise(ytr, yva, yte)
                tau = _residual_precision(Xtr, ytr)
            setup = Setup(likelihood, [X.shape[1], *hidden, 1], nn.ReLU, tau, n_steps, s, device)
            tuned = tune_methods(setup, (Xtr, ytr), val=(Xva, yva), grids=GRIDS["tabular"], gen=gen)
            predictions = {m: tuned[m].payload.predict(Xte) for m in METHODS}
            runs.append({m: _test_scores(likelihood, p, yte) for m, p in predictions.items()})
            tuning.append(_report(tuned))
        summary = {m: protocol.summarise_runs([r[m] for r in runs]) for m in METHODS}
        out[name] = {"likelihood": likelihood, "runs": runs, "summary": summary, "tuning": tuning}
    return out


def tabular_table(result: dict[str, Any]) -> str:
    """``primer_tabular``'s test scores as a text table: mean (sd) over seeds, per method."""
    lines = [f"{len(result['seeds'])} seed(s); mean (sd) over seeds"]
    for name in ("breast_cancer", "diabetes"):
        summary = result[name]["summary"]
        keys = list(summary[METHODS[0]])
        lines.append(f"{name:20s}" + "".join(f"{k:>17s}" for k in keys))
        for m in METHODS:
            cells = (f"{summary[m][k]['mean']:.4f} ({summary[m][k]['sd']:.4f})" for k in keys)
            lines.append(f"  {m:18s}" + "".join(f"{c:>17s}" for c in cells))
    return "\n".join(lines)
