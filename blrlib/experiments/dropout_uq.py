"""What dropout's uncertainty is worth (Sec 4.3): MC dropout, the BLR's dropout and VON.

    from blrlib import experiments
    record = experiments.run("dropout_regression", scale="ci")
    record["result"]["summary"]["mc_dropout"]["nll"]   # mean and sd over seeds

Methods, each from the same initialisation and data, each tuned on a validation split carved
from the training data with a grid of the same size (``protocol.tune_all``):

* ``mc_dropout``: dropout training (``infer.fit_dropout``, Adam on the MAP loss) and T
  stochastic passes (``infer.mc_dropout_predict``);
* ``blr_dropout_adam``: ``optim.AdamLike`` with ``dropout=pi1`` on the hidden units (Eq 42-43
  with Adam's diagonal S), predicting with the masks alone at the slab means, z * m;
* ``von``: ``optim.VON``, a diagonal Gaussian without dropout, predicting with draws from q.

The grids: the learning rate, the dropout rate (VON: its initial precision h0, which sets its
first steps) and the number of steps (two checkpoints of one run). The prior N(0, I) and the
noise precision are the model's, the same for every method and for the reference, and are
not tuned. The regression's network has a fixed random first layer, so that the posterior of
its output layer is Gaussian and computed exactly (``conjugate.posterior``): the reference.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from blrlib import conjugate, data, families, infer, metrics, optim
from blrlib.experiments import protocol
from blrlib.experiments._registry import Scale, register
from blrlib.experiments.deep import _mlp

__all__ = ["dropout_moons", "dropout_regression", "paired"]

F64 = torch.float64
METHODS = ("mc_dropout", "blr_dropout_adam", "von")
PRIOR_PREC = 1.0
Predict = Callable[[Tensor, int], tuple[Tensor, Tensor]]


def paired(
    runs: dict[str, list[dict[str, float]]], key: str, a: str, b: str | None = None, *, k=2.0
) -> tuple[float, float]:
    """(mean - k se, mean + k se) of ``runs[a][key] - runs[b][key]`` paired by seed.

    With ``b`` None the difference is with 0. A claim "a is below b" holds with a margin when
    the upper end is below 0 (``protocol.paired_difference``; with one seed, se = 0).
    """
    values = [r[key] for r in runs[a]]
    other = [r[key] for r in runs[b]] if b is not None else [0.0] * len(values)
    d = protocol.paired_difference(values, other)
    return d["mean"] - k * d["se"], d["mean"] + k * d["se"]


def grids(scale: Scale, n_steps: int, lrs: dict[str, list[float]], h0: float) -> dict[str, Any]:
    """Each method's grid: lr x (dropout rate | VON's h0) x steps, the same size for all."""
    steps = [n_steps // 2, n_steps]
    rates = protocol.by_scale(scale, ci=[0.1], full=[0.05, 0.1, 0.2])
    h0s = protocol.by_scale(scale, ci=[h0], full=[h0 / 10, h0, 10 * h0])
    drop = {"p_drop": rates, "steps": steps}
    return {
        "mc_dropout": {"lr": lrs["mc_dropout"], **drop},
        "blr_dropout_adam": {"lr": lrs["blr_dropout_adam"], **drop},
        "von": {"lr": lrs["von"], "hess_init": h0s, "steps": steps},
    }


class _Runs:
    """Trains each (method, setting) once, snapshotting at every checkpoint of "steps".

    ``objective(method, score)`` is what :func:`protocol.tune` calls: it trains (or reuses a
    run), scores the snapshot on validation with ``score(predict)`` and returns the score and
    the snapshot's ``predict(inputs, n_samples) -> (mean, var)`` as payload.
    """

    def __init__(self, make_net, X, y, *, likelihood, tau, seed, checkpoints):
        self.make_net, self.X, self.y = make_net, X, y
        self.likelihood, self.tau, self.seed = likelihood, tau, seed
        self.checkpoints = sorted(checkpoints)
        self.cache: dict[tuple[Any, ...], dict[int, Predict]] = {}

    def objective(self, method: str, score: Callable[[Predict], float]):
        def run(setting: dict[str, Any]) -> tuple[float, Predict]:
            key = (method, *sorted((k, v) for k, v in setting.items() if k != "steps"))
            if key not in self.cache:
                self.cache[key] = self._train(method, setting)
            predict = self.cache[key][setting["steps"]]
            return score(predict), predict

        return run

    def _loss(self, f: Tensor, t: Tensor) -> Tensor:
        if self.likelihood == "gaussian":
            return 0.5 * self.tau * (f[:, 0] - t) ** 2
        return nn.functional.binary_cross_entropy_with_logits(f[:, 0], t, reduction="none")

    def _train(self, method: str, hp: dict[str, Any]) -> dict[int, Predict]:
        torch.manual_seed(self.seed)
        if method == "mc_dropout":
            return self._train_mc(hp)
        net = self.make_net(0.0)
        gen = torch.Generator(device=self.X.device).manual_seed(self.seed)
        params = [p for p in net.parameters() if p.requires_grad]
        if method == "von":
            opt = optim.VON(params, n_data=len(self.X), lr=hp["lr"], beta=1e-2,
                            hess_init=hp["hess_init"], prior_prec=PRIOR_PREC,
                            generator=gen)  # fmt: skip
        else:  # dropout on the hidden units: the columns of every weight after the first
            weights = [p for p in params if p.dim() >= 2][-_n_hidden_layers(net) :]
            rest = [p for p in params if all(p is not w for w in weights)]
            groups = [{"params": rest}, {"params": weights, "dropout": 1 - hp["p_drop"]}]
            opt = optim.AdamLike(groups, n_data=len(self.X), lr=hp["lr"],
                                 prior_prec=PRIOR_PREC, generator=gen)  # fmt: skip
        out, done = {}, 0
        for stop in self.checkpoints:
            for _ in range(stop - done):
                opt.zero_grad()
                with opt.sampled_params(train=True):
                    self._loss(net(self.X), self.y).mean().backward()
                opt.step()
            done = stop
            out[stop] = self._blr_predict(net, opt, noise=method == "von")
        return out

    def _blr_predict(self, net, opt, *, noise: bool) -> Predict:
        state = copy.deepcopy((net.state_dict(), opt.state_dict()))

        @torch.no_grad()
        def predict(inputs: Tensor, n_samples: int) -> tuple[Tensor, Tensor]:
            net.load_state_dict(state[0])
            opt.load_state_dict(copy.deepcopy(state[1]))
            draws = []
            for _ in range(n_samples):
                with opt.sampled_params(train=False, noise=noise):
                    draws.append(self._link(net(inputs)[:, 0]))
            f = torch.stack(draws)
            return f.mean(0), f.var(0, correction=0)

        return predict

    def _train_mc(self, hp: dict[str, Any]) -> dict[int, Predict]:
        net, out, done = self.make_net(hp["p_drop"]), {}, 0
        for stop in self.checkpoints:
            # a fresh Adam at each checkpoint: its moments restart (a small departure from
            # one uninterrupted run, the price of not retraining from scratch per checkpoint)
            infer.fit_dropout(net, self.X, self.y, likelihood=self.likelihood,
                              prior_precision=PRIOR_PREC, noise_precision=self.tau,
                              n_steps=stop - done, lr=hp["lr"])  # fmt: skip
            done, snap = stop, copy.deepcopy(net)

            def predict(inputs: Tensor, n_samples: int, snap=snap) -> tuple[Tensor, Tensor]:
                tau = self.tau if self.likelihood == "gaussian" else None
                mean, var = infer.mc_dropout_predict(
                    snap, inputs, likelihood=self.likelihood, n_samples=n_samples,
                    noise_precision=tau,
                )  # fmt: skip
                return mean, var - (1 / tau if tau else 0.0)

            out[stop] = predict
        return out

    def _link(self, f: Tensor) -> Tensor:
        return f if self.likelihood == "gaussian" else torch.sigmoid(f)


def _n_hidden_layers(net: nn.Module) -> int:
    return sum(isinstance(m, nn.Linear) for m in net.modules()) - 1


# ------------------------------------------------------------------ regression


def _gap_data(n: int, seed: int, device, noise: float = 0.1):
    """y = sin(x) + x + noise eps on [-3, -1] and [1, 3]: a gap in between, nothing beyond."""
    kw = dict(noise=noise, dtype=F64, device=device)
    left = data.sin_regression(n // 2, low=-3.0, high=-1.0, seed=seed, **kw)
    right = data.sin_regression(n - n // 2, low=1.0, high=3.0, seed=seed + 1, **kw)
    return torch.cat([left[0], right[0]]), torch.cat([left[1], right[1]])


def random_features(hidden: int, seed: int, device) -> nn.Linear:
    """A frozen first layer: unit k is relu(w_k (x - c_k)), w_k ~ N(0, 1), c_k ~ U(-6, 6)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(hidden, 1, generator=gen, dtype=F64)
    c = -6.0 + 12.0 * torch.rand(hidden, generator=gen, dtype=F64)
    layer = nn.Linear(1, hidden, dtype=F64, device=device)
    with torch.no_grad():
        layer.weight.copy_(w)
        layer.bias.copy_(-w[:, 0] * c)
    return layer.requires_grad_(False)


def exact_predictive(first: nn.Linear, X, y, inputs, *, tau: float) -> tuple[Tensor, Tensor]:
    """Mean and variance of f at ``inputs`` under the exact posterior of the output layer.

    The output layer's weights and bias, theta ~ N(0, I / delta) a priori, see the features
    phi(x) = (relu(first(x)), 1): a Bayesian linear regression, conjugate (Eq 54, rho = 1).
    """

    def phi(x: Tensor) -> Tensor:
        with torch.no_grad():
            h = torch.relu(first(x))
        return torch.cat([h, torch.ones_like(h[:, :1])], 1)

    q = families.Gaussian(first.out_features + 1, dtype=F64, device=X.device)
    eye = torch.eye(q.dim, dtype=F64, device=X.device)
    prior = q.natural_from_moments(torch.zeros(q.dim, dtype=F64, device=X.device), eye / PRIOR_PREC)
    lik = conjugate.GaussianLikelihood(1.0 / tau, design=phi(X))
    mean, cov = q.mean_cov(conjugate.posterior(q, prior, lik, y))
    design = phi(inputs)
    return design @ mean, ((design @ cov) * design).sum(-1)


REGIONS = {"in_range": (1.0, 3.0), "in_between": (0.0, 0.5), "far": (6.0, 10.0)}


def _sizes(scale: Scale) -> dict[str, Any]:
    return protocol.by_scale(
        scale,
        ci=dict(n=60, hidden=50, steps=600, n_pred=100),
        full=dict(n=200, hidden=50, steps=3000, n_pred=200),
    )


@register
def dropout_regression(
    *, scale: Scale, device: torch.device, seed: int = 0, n_seeds: int | None = None
) -> dict[str, Any]:
    """y = sin(x) + x with a gap, a network with a random fixed first layer: each tuned method's
    predictive against the exact posterior of the output layer, over seeds."""
    size, tau = _sizes(scale), 100.0
    lrs = protocol.by_scale(
        scale,
        ci={"mc_dropout": [1e-2, 3e-2], "blr_dropout_adam": [1e-2, 3e-2], "von": [0.03, 0.1]},
        full={"mc_dropout": [3e-3, 1e-2, 3e-2], "blr_dropout_adam": [3e-3, 1e-2, 3e-2],
              "von": [0.01, 0.03, 0.1]},
    )  # fmt: skip
    line = torch.linspace(-10.0, 10.0, 201, dtype=F64, device=device).unsqueeze(-1)
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in (*METHODS, "exact")}
    tuned, curves = [], {}
    for s in protocol.seeds(scale, base=seed, n_seeds=n_seeds, ci=1, full=5):
        X, y = _gap_data(size["n"], s, device)
        (X_tr, y_tr), (X_va, y_va) = protocol.train_val_split(X, y, val_fraction=0.25, seed=s)
        x_test, y_test = _gap_data(400, s + 10, device)
        first = random_features(size["hidden"], s, device)

        def make_net(p_drop: float, first=first) -> nn.Sequential:
            drop = [nn.Dropout(p_drop)] if p_drop > 0 else []
            out = nn.Linear(first.out_features, 1, dtype=F64, device=device)
            return nn.Sequential(copy.deepcopy(first), nn.ReLU(), *drop, out)

        trainer = _Runs(make_net, X_tr, y_tr, likelihood="gaussian", tau=tau, seed=s,
                        checkpoints=[size["steps"] // 2, size["steps"]])  # fmt: skip

        def val_nll(predict: Predict, X_va=X_va, y_va=y_va) -> float:
            mean, var = predict(X_va, size["n_pred"])
            return metrics.gaussian_nll(mean, var + 1 / tau, y_va)

        grid = grids(scale, size["steps"], lrs, h0=100.0)
        best = protocol.tune_all({m: (trainer.objective(m, val_nll), grid[m]) for m in METHODS})
        tuned.append({m: t.as_dict() for m, t in best.items()})
        predicts = {m: best[m].payload for m in METHODS}
        predicts["exact"] = lambda x, _, X_tr=X_tr, y_tr=y_tr, first=first: exact_predictive(
            first, X_tr, y_tr, x, tau=tau
        )
        exact_sd = predicts["exact"](line, 0)[1].add(1 / tau).sqrt()
        for name, predict in predicts.items():  # the test split, once
            mean, var = predict(x_test, size["n_pred"])
            row = {"nll": metrics.gaussian_nll(mean, var + 1 / tau, y_test),
                   "rmse": float(((mean - y_test) ** 2).mean().sqrt())}  # fmt: skip
            m_line, v_line = predict(line, size["n_pred"])
            sd = (v_line + 1 / tau).sqrt()
            for region, (lo, hi) in REGIONS.items():
                mask = (line[:, 0].abs() >= lo) & (line[:, 0].abs() <= hi)
                row[f"sd_{region}"] = float(sd[mask].mean())
                row[f"log_sd_ratio_{region}"] = float((sd[mask] / exact_sd[mask]).log().mean())
            runs[name].append(row)
            if s == seed:
                curves[name] = {"mean": m_line.tolist(), "sd": sd.tolist()}
        if s == seed:
            first_data = {"x": X_tr[:, 0].tolist(), "y": y_tr.tolist()}
    return {
        **first_data, "line": line[:, 0].tolist(), "curves": curves, "runs": runs,
        "summary": {m: protocol.summarise_runs(r) for m, r in runs.items()},
        "tuned": tuned, "tau": tau, "seeds": protocol.seeds(scale, base=seed, n_seeds=n_seeds),
    }  # fmt: skip


# ------------------------------------------------------------------ two moons


def _ring(n: int, r_lo: float, r_hi: float, gen, device) -> Tensor:
    angle = 2 * math.pi * torch.rand(n, generator=gen, dtype=F64, device=device)
    radius = r_lo + (r_hi - r_lo) * torch.rand(n, generator=gen, dtype=F64, device=device)
    return torch.stack([radius * angle.cos() + 0.5, radius * angle.sin() + 0.25], -1)


@register
def dropout_moons(
    *, scale: Scale, device: torch.device, seed: int = 0, n_seeds: int | None = None
) -> dict[str, Any]:
    """Two moons: accuracy, NLL, ECE, and the confidence far from the data, over seeds."""
    hidden, n_steps, n_pred = protocol.by_scale(scale, ci=(16, 400, 50), full=(32, 2000, 200))
    lrs = protocol.by_scale(
        scale,
        ci={"mc_dropout": [1e-2, 3e-2], "blr_dropout_adam": [1e-2, 3e-2], "von": [0.3, 1.0]},
        full={"mc_dropout": [3e-3, 1e-2, 3e-2], "blr_dropout_adam": [3e-3, 1e-2, 3e-2],
              "von": [0.1, 0.3, 1.0]},
    )  # fmt: skip
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
    axis = torch.linspace(-3, 4, 40, dtype=F64)
    grid_x = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)
    grid_x, tuned, grid_probs = grid_x.to(device), [], {}
    for s in protocol.seeds(scale, base=seed, n_seeds=n_seeds, ci=1, full=5):
        gen = torch.Generator(device=device).manual_seed(s)
        X, y = data.two_moons(250, noise=0.15, seed=s, dtype=F64, device=device)
        (X_tr, y_tr), (X_va, y_va) = protocol.train_val_split(X, y, val_fraction=0.2, seed=s)
        X_te, y_te = data.two_moons(1000, noise=0.15, seed=s + 100, dtype=F64, device=device)
        far = _ring(500, 6.0, 10.0, gen, device)

        def make_net(p_drop: float) -> nn.Sequential:
            return _mlp([2, hidden, hidden, 1], device, p_drop)

        trainer = _Runs(make_net, X_tr, y_tr, likelihood="bernoulli", tau=1.0, seed=s,
                        checkpoints=[n_steps // 2, n_steps])  # fmt: skip

        def val_nll(predict: Predict, X_va=X_va, y_va=y_va) -> float:
            return metrics.nll(predict(X_va, n_pred)[0], y_va)

        grid = grids(scale, n_steps, lrs, h0=1.0)
        best = protocol.tune_all({m: (trainer.objective(m, val_nll), grid[m]) for m in METHODS})
        tuned.append({m: t.as_dict() for m, t in best.items()})
        for name in METHODS:  # the test split, once
            predict = best[name].payload
            p_test, p_far = predict(X_te, n_pred)[0], predict(far, n_pred)[0]
            runs[name].append({
                "accuracy": metrics.accuracy(p_test, y_te), "nll": metrics.nll(p_test, y_te),
                "ece": metrics.ece(p_test, y_te),
                "confidence_far": float(torch.maximum(p_far, 1 - p_far).mean()),
            })  # fmt: skip
            if s == seed:
                grid_probs[name] = predict(grid_x, n_pred)[0].tolist()
                first = {"X": X_tr.tolist(), "y": y_tr.tolist()}
    return {
        "runs": runs, "summary": {m: protocol.summarise_runs(r) for m, r in runs.items()},
        "tuned": tuned, "grid": grid_x.tolist(), "grid_probs": grid_probs, **first,
        "seeds": protocol.seeds(scale, base=seed, n_seeds=n_seeds),
    }  # fmt: skip
