"""Sec 4.3 at work: what dropout approximates, what App G's approximations cost, what MC
dropout's uncertainty is worth.

    from blrlib import experiments
    record = experiments.run("dropout_regression", scale="ci")
    record["result"]["scores"]["blr_dropout_adam"]   # NLL, sd in range / in between / far away

Methods, each from the same initialisation and data: MC dropout (``blrlib.infer``: dropout
training, T stochastic passes averaged), the BLR's dropout-Adam (``optim.AdamLike`` with
``dropout=pi1``, predicting with draws z (m + eps / sqrt(s)) of its spike-and-slab q, or with
the masks alone, z m: ``_masks``), VON
(``optim.VON``, a diagonal Gaussian) and, on the regression, HMC as ground truth
(``blrlib.infer.mcmc``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from blrlib import data, families, infer, metrics, optim
from blrlib import dropout as approx
from blrlib.experiments._registry import Scale, register
from blrlib.experiments.deep import _mlp
from blrlib.infer import mcmc, predictive

__all__ = [
    "dropout_approximations", "dropout_learn_rate", "dropout_moons", "dropout_regression",
]  # fmt: skip

F64 = torch.float64
METHODS = ("mc_dropout", "blr_dropout_adam", "blr_dropout_adam_masks", "von")


@register
def dropout_approximations(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """One exact spike-and-slab step against Eq 42-43, over s0 and the distance of m from 0.

    A logistic regression with two inputs (units, P = 1), slab precision 4 and pi1 = 0.8; the
    loss term (Eq 84) and the entropy term (Eq 85-86) errors are reported separately.
    """
    del device, seed  # deterministic quadrature on the CPU
    x = torch.tensor([[1.0, 0.5], [-0.3, 1.2], [0.8, -1.0], [-1.1, -0.4]], dtype=F64)
    y = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=F64)

    def loss(theta: Tensor) -> Tensor:
        return nn.functional.softplus(-y * (x @ theta)).sum() + 0.5 * (theta * theta).sum()

    s0s = [10.0**k for k in range(-4, 7, 1 if scale is not Scale.CI else 2)]
    means = [0.05, 0.25, 0.5, 1.0, 2.0] if scale is not Scale.CI else [0.05, 0.5, 2.0]
    rows = []
    for m in means:
        for s0 in s0s:
            q = families.SpikeSlab(0.8, s0, n_units=2, unit_dim=1, dtype=F64)
            lam = q.natural_from_moments(
                torch.tensor([[m], [-m]], dtype=F64), torch.full((2, 1, 1), 4.0, dtype=F64)
            )
            rows.append({"m": m, "s0": s0, **approx.approximation_cost(q, lam, loss, rho=0.5)})
    return {"slab_sd": 0.5, "pi1": 0.8, "rows": rows}


def _train_blr(net, opt, X, y, per_example, n_steps):
    """Full-batch training of a blrlib.optim optimizer on the batch-mean loss."""
    for _ in range(n_steps):
        opt.zero_grad()
        with opt.sampled_params(train=True):
            per_example(net(X), y).mean().backward()
        opt.step()


@torch.no_grad()
def _samples(net, opt, X, n_samples, noise=True):
    """Network outputs at draws from q (with dropout, z (m + eps / sqrt(s))): (S, N, out)."""
    out = []
    for _ in range(n_samples):
        with opt.sampled_params(train=False, noise=noise):
            out.append(net(X))
    return torch.stack(out)


def _fit(X, y, sizes, *, likelihood, tau, p_drop, n_steps, hp, gen, device):
    """Train MC dropout, BLR dropout-Adam and VON; returns predict(name, X, S) -> outputs
    (S, N, 1), and the networks."""
    n = len(X)
    seed = int(torch.randint(0, 2**31, (), generator=gen))
    if likelihood == "gaussian":

        def per_example(f, t):  # noqa: E306
            return 0.5 * tau * (f[:, 0] - t) ** 2
    else:

        def per_example(f, t):  # noqa: E306
            return nn.functional.binary_cross_entropy_with_logits(f[:, 0], t, reduction="none")

    nets = {}
    torch.manual_seed(seed)
    nets["mc_dropout"] = _mlp(sizes, device, p_drop)
    infer.fit_dropout(nets["mc_dropout"], X, y, likelihood=likelihood, prior_precision=1.0,
                      noise_precision=tau, n_steps=n_steps, lr=hp["lr"])  # fmt: skip
    opts = {}
    for name in ("blr_dropout_adam", "von"):
        torch.manual_seed(seed)
        net = nets[name] = _mlp(sizes, device)
        g = torch.Generator(device=device).manual_seed(seed)
        if name == "von":
            opt = optim.VON(net.parameters(), n_data=n, lr=hp["von_lr"], beta=hp["beta"],
                            hess_init=hp["hess_init"], generator=g)  # fmt: skip
        else:  # dropout on the hidden units: the columns of every weight after the first
            first, rest = list(net[0].parameters()), [p for p in net[1:].parameters()]
            groups = [{"params": first}, {"params": rest, "dropout": 1 - p_drop}]
            opt = optim.AdamLike(groups, n_data=n, lr=hp["lr"], generator=g)
        _train_blr(net, opt, X, y, per_example, n_steps)
        opts[name] = opt

    def predict(name: str, inputs: Tensor, n_samples: int) -> Tensor:
        net = nets.get(name)
        if name == "mc_dropout":
            net.train()
            with torch.no_grad():
                out = torch.stack([net(inputs) for _ in range(n_samples)])
            net.eval()
            return out
        if name == "blr_dropout_adam_masks":
            return _samples(nets["blr_dropout_adam"], opts["blr_dropout_adam"], inputs,
                            n_samples, noise=False)  # fmt: skip
        return _samples(net, opts[name], inputs, n_samples)

    return predict, nets


def _gap_data(n: int, seed: int, device):
    """y = sin(x) + x + 0.1 eps on [-3, -1] and [1, 3]: a gap in between, nothing beyond."""
    left = data.sin_regression(n // 2, low=-3.0, high=-1.0, seed=seed, dtype=F64, device=device)
    right = data.sin_regression(n // 2, low=1.0, high=3.0, seed=seed + 1, dtype=F64, device=device)
    return torch.cat([left[0], right[0]]), torch.cat([left[1], right[1]])


def _log_joint(X: Tensor, y: Tensor, hidden: int, tau: float):
    """log p(y, theta | X) of the 1-hidden-layer ReLU network for C chains at once, (C, P) ->
    (C,), in ``BayesModel``'s parameter order (W1, b1, W2, b2) and with its prior N(0, I).
    The density of ``mcmc.log_prob_fn(bm, X, y)`` up to a constant, batched by hand (about
    three times faster)."""

    def log_prob(theta: Tensor) -> Tensor:
        w1, b1, w2, b2 = theta.split([hidden, hidden, hidden, 1], -1)
        f = torch.relu(X[None, :, :1] * w1[:, None, :] + b1[:, None, :]) @ w2[:, :, None]
        f = f[..., 0] + b2
        return -0.5 * tau * ((f - y) ** 2).sum(-1) - 0.5 * (theta * theta).sum(-1)

    return log_prob


REGIONS = {"in_range": (1.0, 3.0), "in_between": (-0.5, 0.5), "far": (6.0, 10.0)}
HP = dict(lr=1e-2, von_lr=0.05, beta=1e-2, hess_init=1.0)


@register
def dropout_regression(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """y = sin(x) + x with a gap: predictive mean and sd of each method against HMC."""
    full = scale is not Scale.CI
    n, hidden, n_steps, tau, p_drop = (200 if full else 60), 50, (5000 if full else 800), 100.0, 0.1
    gen = torch.Generator(device=device).manual_seed(seed)
    X, y = _gap_data(n, seed, device)
    x_test, y_test = _gap_data(400, seed + 10, device)
    line = torch.linspace(-10.0, 10.0, 201, dtype=F64, device=device).unsqueeze(-1)
    predict, nets = _fit(X, y, [1, hidden, 1], likelihood="gaussian", tau=tau, p_drop=p_drop,
                   n_steps=n_steps, hp=HP, gen=gen, device=device)  # fmt: skip
    n_pred = 200 if full else 100
    out: dict[str, Any] = {}
    for name in METHODS:
        f_line, f_test = predict(name, line, n_pred)[..., 0], predict(name, x_test, n_pred)[..., 0]
        out[name] = (
            f_line.mean(0),
            f_line.var(0) + 1 / tau,
            f_test.mean(0),
            f_test.var(0) + 1 / tau,
        )
    # HMC on the same network without dropout, started from VON's mean
    bm = infer.BayesModel(_mlp([1, hidden, 1], device), "gaussian", prior_precision=1.0,
                          noise_precision=tau)  # fmt: skip
    start = torch.cat([p.detach().reshape(-1) for p in nets["von"].parameters()])
    chains, draws, warm = (4, 2000, 1000) if full else (4, 150, 150)
    init = start + 0.01 * torch.randn(
        chains, start.numel(), generator=gen, dtype=F64, device=device
    )
    idata = mcmc.hmc(_log_joint(X, y, hidden, tau), init, n_samples=draws, n_warmup=warm,
                     n_leapfrog=10 if not full else 30, generator=gen)  # fmt: skip
    thetas = mcmc.draws(idata)
    out["hmc"] = (*predictive.mc(bm, line, thetas), *predictive.mc(bm, x_test, thetas))
    scores = {}
    for name, (_, v_line, m_test, v_test) in out.items():
        sd = v_line.sqrt()
        row = {"nll": metrics.gaussian_nll(m_test, v_test, y_test),
               "rmse": float(((m_test - y_test) ** 2).mean().sqrt())}  # fmt: skip
        for region, (lo, hi) in REGIONS.items():
            mask = (line[:, 0].abs() >= lo) & (line[:, 0].abs() <= hi)
            row[f"sd_{region}"] = float(sd[mask].mean())
        row["far_over_in_range"] = row["sd_far"] / row["sd_in_range"]
        scores[name] = row
    hmc_sd = out["hmc"][1].sqrt()
    for name in METHODS:
        scores[name]["log_sd_error_to_hmc"] = float(
            (out[name][1].sqrt() / hmc_sd).log().abs().mean()
        )
    return {
        "x": X[:, 0].tolist(), "y": y.tolist(), "line": line[:, 0].tolist(),
        "predictions": {k: {"mean": v[0].tolist(), "sd": v[1].sqrt().tolist()}
                        for k, v in out.items()},
        "scores": scores, "hmc": mcmc.diagnostics(idata), "tau": tau, "pi1": 1 - p_drop,
    }  # fmt: skip


def _ring(n: int, r_lo: float, r_hi: float, gen, device) -> Tensor:
    angle = 2 * math.pi * torch.rand(n, generator=gen, dtype=F64, device=device)
    radius = r_lo + (r_hi - r_lo) * torch.rand(n, generator=gen, dtype=F64, device=device)
    return torch.stack([radius * angle.cos() + 0.5, radius * angle.sin() + 0.25], -1)


@register
def dropout_moons(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Two moons: accuracy, NLL, ECE, and the confidence far from the data, over seeds."""
    full = scale is not Scale.CI
    seeds = [seed + i for i in range(5 if full else 1)]
    hidden, n_steps, n_pred = (128, 3000, 200) if full else (32, 600, 50)
    p_drop = 0.1
    hp = dict(HP, von_lr=0.5, beta=1e-3, hess_init=0.3)  # experiments.deep's VON settings
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
    grid = torch.stack(
        torch.meshgrid(*[torch.linspace(-3, 4, 40, dtype=F64)] * 2, indexing="xy"), -1
    )
    grid = grid.reshape(-1, 2).to(device)
    grid_probs: dict[str, list[float]] = {}
    for s in seeds:
        gen = torch.Generator(device=device).manual_seed(s)
        X, y = data.two_moons(200, noise=0.15, seed=s, dtype=F64, device=device)
        X_test, y_test = data.two_moons(1000, noise=0.15, seed=s + 100, dtype=F64, device=device)
        far = _ring(500, 6.0, 10.0, gen, device)
        predict, _ = _fit(
            X, y, [2, hidden, hidden, 1], likelihood="bernoulli", tau=1.0,
            p_drop=p_drop, n_steps=n_steps, hp=hp, gen=gen, device=device,
        )  # fmt: skip
        for name in METHODS:
            p_test = torch.sigmoid(predict(name, X_test, n_pred)[..., 0]).mean(0)
            p_far = torch.sigmoid(predict(name, far, n_pred)[..., 0]).mean(0)
            runs[name].append({
                "accuracy": metrics.accuracy(p_test, y_test), "nll": metrics.nll(p_test, y_test),
                "ece": metrics.ece(p_test, y_test),
                "confidence_far": float(torch.maximum(p_far, 1 - p_far).mean()),
            })  # fmt: skip
            if s == seeds[0]:
                grid_probs[name] = (
                    torch.sigmoid(predict(name, grid, n_pred)[..., 0]).mean(0).tolist()
                )
    mean = {m: {k: sum(r[k] for r in rs) / len(rs) for k in rs[0]} for m, rs in runs.items()}
    return {"runs": runs, "mean": mean, "grid": grid.tolist(), "grid_probs": grid_probs,
            "X": X.tolist(), "y": y.tolist()}  # fmt: skip


def _learn_fit(X, y, x_test, y_test, *, setting, hidden, n_steps, n_pred, tau, seed, device):
    """AdamLike with dropout on the two hidden layers' units, each layer its own group (pi1
    fixed, or a ConcreteDropout); test NLL and RMSE of the masks-only predictive, and pi1."""
    torch.manual_seed(seed)
    net = _mlp([1, hidden, hidden, 1], device)
    rest = [*net[0].parameters(), net[2].bias, net[4].bias]
    groups = [{"params": rest}] + [{"params": [net[i].weight], "dropout": setting} for i in (2, 4)]
    opt = optim.AdamLike(groups, n_data=len(X), lr=HP["lr"],
                         generator=torch.Generator(device=device).manual_seed(seed))  # fmt: skip
    trace = []
    for t in range(n_steps):
        _train_blr(net, opt, X, y, lambda f, v: 0.5 * tau * (f[:, 0] - v) ** 2, 1)
        if t % max(n_steps // 50, 1) == 0 or t == n_steps - 1:
            trace.append([g["dropout"] for g in opt.param_groups[1:]])
    f = _samples(net, opt, x_test, n_pred, noise=False)[..., 0]
    m, v = f.mean(0), f.var(0) + 1 / tau
    return {"nll": metrics.gaussian_nll(m, v, y_test),
            "rmse": float(((m - y_test) ** 2).mean().sqrt()),
            "pi1": trace[-1], "trace": trace}  # fmt: skip


@register
def dropout_learn_rate(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Learned against fixed pi1 (0.9) on y = sin(x) + x with a small and a large training set.

    A 1-50-50-1 ReLU network (ci; 100 units at full), AdamLike with dropout on both hidden layers,
    each with its own pi1: fixed, or learned (``optim.ConcreteDropout``, temperature 0.1, rate
    1e-3). Test NLL
    and RMSE of the masks-only predictive (MC dropout at the slab means) on 400 test points, and
    the learned pi1 per layer (with its trajectory), per training-set size and seed.
    """
    full = scale is not Scale.CI
    sizes, seeds = [30, 1000], [seed + i for i in range(5 if full else 1)]
    hidden, n_steps, n_pred = (100, 4000, 200) if full else (50, 600, 100)
    tau, pi1 = 100.0, 0.9
    settings = {"fixed": pi1, "learned": optim.ConcreteDropout(pi1, temperature=0.1, lr=1e-3)}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        str(n): {k: [] for k in settings} for n in sizes
    }
    for s in seeds:
        x_test, y_test = _gap_data(400, s + 10, device)
        for n in sizes:
            X, y = _gap_data(n, s, device)
            for name, setting in settings.items():
                runs[str(n)][name].append(_learn_fit(
                    X, y, x_test, y_test, setting=setting, hidden=hidden, n_steps=n_steps,
                    n_pred=n_pred, tau=tau, seed=s, device=device,
                ))  # fmt: skip
    mean = {n: {k: {m: sum(r[m] for r in rs) / len(rs) for m in ("nll", "rmse")}
                for k, rs in by.items()} for n, by in runs.items()}  # fmt: skip
    for n, by in runs.items():
        learned = by["learned"]
        mean[n]["learned"]["pi1"] = [
            sum(r["pi1"][i] for r in learned) / len(learned) for i in (0, 1)
        ]
    return {"sizes": sizes, "pi1_init": pi1, "runs": runs, "mean": mean,
            "trace_every": max(n_steps // 50, 1)}  # fmt: skip
