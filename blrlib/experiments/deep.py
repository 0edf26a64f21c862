"""Sec 4.2 and 4.4 at work: BLR optimizers on networks (digits, two moons, Fig 1 in 2-D).

    from blrlib import experiments
    record = experiments.run("optim_digits", scale="ci")
    record["result"]["summary"]["von"]["nll"]   # mean, sd and values over seeds

``optim_digits`` follows ``experiments.protocol``: per seed a stratified train / validation /
test split of scikit-learn's digits; Adam, SGD with momentum, VOGN and VON (``blrlib.optim``),
MC dropout and last-layer Laplace (``blrlib.infer``) each tuned on its own grid of
``DIGITS_GRIDS`` (three settings each) by the validation NLL; the winner is scored once on the
test digits and on two out-of-distribution sets (uniform noise and the test digits rotated by
90 degrees, scored by the AUROC of the predictive entropy against the test digits).
``optim_moons`` and ``optim_sharp_flat_2d`` (in ``deep_toys``) are the chapter's pictures.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from blrlib import infer, metrics, optim
from blrlib.experiments import protocol
from blrlib.experiments._registry import Scale, register
from blrlib.infer import predictive

__all__ = [
    "DIGITS_GRIDS", "auroc", "digits_splits", "entropy", "fit", "optim_digits", "reliability",
]  # fmt: skip

F64 = torch.float64
METHODS = ("adam", "sgd", "von", "vogn", "mc_dropout", "laplace_last_layer")
FORGET = 5.0
"""The precision rate of VON and VOGN is beta = FORGET / steps, so that a run keeps a fraction
(1 - beta)^steps <= exp(-5) < 1 % of its initial h: the precision it ends with is learned."""


def _ce(f: Tensor, y: Tensor) -> Tensor:
    return nn.functional.cross_entropy(f, y, reduction="none")


def entropy(probs: Tensor) -> Tensor:
    """Predictive entropy -sum_k p_k log p_k of each row, in nats."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1)


def auroc(inside: Tensor, outside: Tensor) -> float:
    """P(score_out > score_in) + P(tie) / 2: how well a score separates OOD inputs (1 = perfect)."""
    diff = outside.unsqueeze(1) - inside.unsqueeze(0)
    return float((diff > 0).double().mean() + 0.5 * (diff == 0).double().mean())


def reliability(probs: Tensor, y: Tensor, n_bins: int = 10) -> dict[str, list[float]]:
    """Per confidence bin: mean confidence, accuracy and count (a reliability diagram's data)."""
    conf, pred = probs.max(-1)
    bins = torch.clamp((conf * n_bins).long(), max=n_bins - 1)
    out: dict[str, list[float]] = {"confidence": [], "accuracy": [], "count": []}
    for b in range(n_bins):
        mask = bins == b
        k = int(mask.sum())
        out["count"].append(k)
        out["confidence"].append(float(conf[mask].mean()) if k else float("nan"))
        out["accuracy"].append(
            float((pred[mask] == y[mask]).double().mean()) if k else float("nan")
        )
    return out


def _mlp(sizes: list[int], device: torch.device, p_drop: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b, dtype=F64, device=device))
        if i < len(sizes) - 2:
            layers += [nn.ReLU()] + ([nn.Dropout(p_drop)] if p_drop > 0 else [])
    return nn.Sequential(*layers)


def _optimizer(name: str, net: nn.Module, n: int, prior_prec: float, hp: dict[str, float]):
    if name == "adam":
        return torch.optim.Adam(net.parameters(), lr=hp["lr"], weight_decay=prior_prec / n)
    if name == "sgd":
        return torch.optim.SGD(net.parameters(), lr=hp["lr"], momentum=0.9,
                               weight_decay=prior_prec / n)  # fmt: skip
    kw = dict(n_data=n, lr=hp["lr"], beta=hp["beta"], prior_prec=prior_prec,
              hess_init=hp["hess_init"], generator=hp.get("generator"))  # fmt: skip
    if name == "vogn":
        return optim.VOGN(net.parameters(), model=net, loss_fn=_ce, **kw)
    if name == "von":
        return optim.VON(net.parameters(), **kw)
    raise ValueError(f"name must be one of 'adam', 'sgd', 'von', 'vogn'; got {name!r}")


def fit(
    name: str,
    net: nn.Module,
    X: Tensor,
    y: Tensor,
    *,
    epochs: int,
    batch: int,
    prior_prec: float,
    hp: dict[str, Any],
    gen: torch.Generator,
) -> Any:
    """Train ``net`` in place with optimizer ``name`` on mini-batches of the batch-mean loss.

    A cosine schedule takes the learning rate to 0 over ``epochs``. ``hp`` holds ``lr`` and,
    for ``"von"`` and ``"vogn"``, ``beta`` and ``hess_init`` (and optionally a ``generator``
    for the draws). A network with dropout modules trains with dropout on (MC dropout).
    Returns the optimizer.
    """
    n = len(X)
    opt = _optimizer(name, net, n, prior_prec, hp)
    steps = epochs * (n // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen, device=X.device)
        for i in range(n // batch):
            idx = order[i * batch : (i + 1) * batch]
            opt.zero_grad()
            if name in ("adam", "sgd"):
                _ce(net(X[idx]), y[idx]).mean().backward()
            elif name == "vogn":
                with opt.sampled_params(train=True):
                    opt.backward(X[idx], y[idx])
            else:
                with opt.sampled_params(train=True):
                    _ce(net(X[idx]), y[idx]).mean().backward()
            opt.step()
            sched.step()
    return opt


def _load_digits(device: torch.device) -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: nothing downloads

    X, y = load_digits(return_X_y=True)
    return (torch.as_tensor(X / 16.0, dtype=F64, device=device),
            torch.as_tensor(y, device=device))  # fmt: skip


def _digits(seed: int, device: torch.device) -> tuple[Tensor, ...]:
    """A random 1200 / 597 split of the digits (no validation part), standardised, with the
    rotated test digits and uniform-noise images: (X, y, X_test, y_test, rotated, noise)."""
    X, y = _load_digits(device)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed)).to(device)
    X, y = X[perm], y[perm]
    n_train = 1200
    mean, std = X[:n_train].mean(0), X[:n_train].std(0) + 0.1
    X = (X - mean) / std
    rotated = X.view(-1, 8, 8).rot90(1, (1, 2)).reshape(-1, 64)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(len(X) - n_train, 64, generator=gen, dtype=F64).to(device)  # pixels
    noise = (noise - mean) / std
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:], rotated[n_train:], noise


def digits_splits(seed: int, device: torch.device) -> dict[str, tuple[Tensor, Tensor | None]]:
    """The protocol's split of the 1797 digits: test 1/3, validation 20 % of the rest.

    Standardised with the training part's pixel means and sds (+ 0.1, for the constant border
    pixels); ``rotated`` is the test digits turned by 90 degrees and ``noise`` uniform [0, 16]
    pixel images, as many as test digits (their labels are None).
    """
    X, y = _load_digits(device)
    train, val, test = protocol.split(X, y, test_fraction=1 / 3, val_fraction=0.2, seed=seed)
    mean, std = train[0].mean(0), train[0].std(0) + 0.1
    parts = {k: ((v[0] - mean) / std, v[1]) for k, v in
             {"train": train, "val": val, "test": test}.items()}  # fmt: skip
    rotated = parts["test"][0].view(-1, 8, 8).rot90(1, (1, 2)).reshape(-1, 64)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(len(rotated), 64, generator=gen, dtype=F64).to(device)
    return {**parts, "rotated": (rotated, None), "noise": ((noise - mean) / std, None)}


DIGITS_GRIDS: dict[str, dict[str, dict[str, list[float]]]] = {
    "ci": {
        "adam": {"lr": [1e-2, 3e-2, 1e-1]},
        "sgd": {"lr": [0.03, 0.1, 0.3]},
        "von": {"lr": [0.1, 0.2, 0.3]},
        "vogn": {"lr": [0.1, 0.3, 0.5]},
        "mc_dropout": {"p_drop": [0.02, 0.05, 0.1]},
        "laplace_last_layer": {"prior_prec": [30.0, 100.0, 300.0]},
    },
    "full": {
        "adam": {"lr": [1e-2, 3e-2, 1e-1]},
        "sgd": {"lr": [0.2, 0.3, 0.4]},
        "von": {"lr": [0.1, 0.13, 0.16]},
        "vogn": {"lr": [0.03, 0.1, 0.3]},
        "mc_dropout": {"p_drop": [0.01, 0.02, 0.05]},
        "laplace_last_layer": {"prior_prec": [100.0, 300.0, 1000.0]},
    },
}
"""Three settings per method and scale: learning rates (Adam, SGD, VON, VOGN), the drop rate of
MC dropout (trained as Adam, with Adam's winning lr) and the prior precision of the last-layer
Laplace approximation fitted to Adam's winning network.

``ci``: set on the validation split of seed 0 (five-point sweeps, ci sizes) so that each winner
lies inside its grid; VON's lr stops at 0.3, where its validation NLL is already 0.6. ``full``:
with the ci grids at full size (64-128-128-10, 100 epochs, 5 seeds) every seed chose VON's
smallest lr, SGD's largest, Laplace's largest prior precision and (on 4 seeds) the smallest drop
rate, so the full grids move past those edges, from validation sweeps on seeds 0 and 3: VON's
NLL is 0.24-0.25 at lr 0.03 and 0.05, 0.16 and 0.11 at 0.1, 0.16 and 0.09 at 0.13, and at 0.16
it diverges on seed 3 (1.8); SGD's NLL jumps at lr 0.4 (to 2.30, uniform predictions, on seed
0; 1.86 on seed 3) and stays high at 0.6 and 1.0, so 0.3 is the largest stable rate."""
DIGITS_FIXED = dict(prior_prec=1.0, batch=64, hess_init=0.5)
"""Not tuned: the prior N(0, I) of every method (weight decay 1 / N for Adam and SGD), the
batch size, and VON's and VOGN's initial h (beta = FORGET / steps leaves exp(-5) of it)."""


def _digits_sizes(scale: Scale) -> dict[str, int]:
    return protocol.by_scale(scale, ci=dict(hidden=32, epochs=20, n_samples=16),
                             full=dict(hidden=128, epochs=100, n_samples=64))  # fmt: skip


class _Fitted:
    """A tuned model: its network and its predictive ``x -> probabilities``."""

    def __init__(self, net: nn.Module, predict: Any) -> None:
        self.net, self.predict = net, predict


def _predictor(name: str, net: nn.Module, opt: Any, n_samples: int) -> Any:
    if name in ("adam", "sgd"):
        return lambda x: torch.softmax(net(x), -1)
    return lambda x: optim.predict(net, opt, x, n_samples=n_samples)


def _scores(
    predict: Any, parts: dict[str, tuple[Tensor, Tensor | None]]
) -> tuple[dict[str, float], Tensor]:
    """Test scores, OOD entropies and AUROCs and the training NLL; and the test probabilities."""
    with torch.no_grad():
        probs = {k: predict(parts[k][0]) for k in ("test", "rotated", "noise", "train")}
    yt = parts["test"][1]
    h_in = entropy(probs["test"])
    out = {
        "accuracy": metrics.accuracy(probs["test"], yt),
        "nll": metrics.nll(probs["test"], yt),
        "ece": metrics.ece(probs["test"], yt),
        "brier": metrics.brier(probs["test"], yt),
        "train_nll": metrics.nll(probs["train"], parts["train"][1]),
        "entropy_test": float(h_in.mean()),
    }
    for k in ("rotated", "noise"):
        h = entropy(probs[k])
        out[f"entropy_{k}"] = float(h.mean())
        out[f"auroc_{k}"] = auroc(h_in, h)
    return out, probs["test"]


_CHUNK = 100


def _head_ggn(head: nn.Linear, features: Tensor, y: Tensor) -> Tensor:
    """The data term of the last layer's GGN, sum_i J_i^T Lambda_i J_i, from ``infer.laplace``
    on chunks of examples (its Jacobian costs N^2 per call); the prior is added per setting."""
    bm = infer.BayesModel(head, "categorical", prior_precision=1.0)
    eye = torch.eye(bm.dim, dtype=features.dtype, device=features.device)
    total = torch.zeros_like(eye)
    for f, t in zip(features.split(_CHUNK), y.split(_CHUNK), strict=True):
        q = infer.laplace(bm, f, t, bm.theta0(), curvature="ggn")
        total += torch.linalg.inv(q.cov) - eye  # the chunk's precision less the prior
    return total


def _tune_seed(
    seed: int,
    parts,
    sizes: dict[str, int],
    grids: dict[str, dict[str, list[float]]],
    device: torch.device,
):
    """Every method tuned on its grid by the validation NLL; returns ``{method: Tuned}``."""
    (X, y), (Xv, yv) = parts["train"], parts["val"]
    batch, prior = DIGITS_FIXED["batch"], DIGITS_FIXED["prior_prec"]
    net_sizes = [64, sizes["hidden"], sizes["hidden"], 10]
    steps = sizes["epochs"] * (len(X) // batch)

    def train(name: str, hp: dict[str, Any], p_drop: float = 0.0) -> _Fitted:
        torch.manual_seed(seed)
        net = _mlp(net_sizes, device, p_drop=p_drop)
        hp = dict(hp, beta=FORGET / steps, hess_init=DIGITS_FIXED["hess_init"],
                  generator=torch.Generator(device=device).manual_seed(seed))  # fmt: skip
        opt = fit(name, net, X, y, epochs=sizes["epochs"], batch=batch, prior_prec=prior,
                  hp=hp, gen=torch.Generator(device=device).manual_seed(seed))  # fmt: skip
        if p_drop > 0:
            return _Fitted(
                net,
                lambda x: infer.mc_dropout_predict(
                    net, x, likelihood="categorical", n_samples=sizes["n_samples"]
                )[0],
            )
        return _Fitted(net, _predictor(name, net, opt, sizes["n_samples"]))

    def objective(name: str):
        def score(hp: dict[str, Any]) -> tuple[float, _Fitted]:
            fitted = train(name, hp)
            with torch.no_grad():
                return metrics.nll(fitted.predict(Xv), yv), fitted

        return score

    tuned = protocol.tune_all({m: (objective(m), grids[m])
                               for m in ("adam", "sgd", "von", "vogn")})  # fmt: skip
    adam = tuned["adam"]

    def dropout(hp: dict[str, Any]) -> tuple[float, _Fitted]:
        fitted = train("adam", {"lr": adam.best["lr"]}, p_drop=hp["p_drop"])
        with torch.no_grad():
            return metrics.nll(fitted.predict(Xv), yv), fitted

    net = adam.payload.net
    body, head = net[:-1], net[-1]  # features and the last (linear) layer
    with torch.no_grad():
        ggn = _head_ggn(head, body(X), y)

    def laplace(hp: dict[str, Any]) -> tuple[float, _Fitted]:
        # the logits are linear in the last layer: its GGN is its exact Hessian, and the
        # Laplace approximation of the head on fixed features is last-layer Laplace
        delta = hp["prior_prec"]
        bm = infer.BayesModel(head, "categorical", prior_precision=delta)
        prec = ggn + delta * torch.eye(len(ggn), dtype=ggn.dtype, device=ggn.device)
        q = infer.GaussianPosterior.from_mean_precision(bm.theta0(), prec)

        def predict(x: Tensor) -> Tensor:  # in chunks: the Jacobian grows with N^2
            feats = body(x).split(_CHUNK)
            return torch.cat([predictive.predict(bm, f, q, method="probit") for f in feats])

        fitted = _Fitted(net, predict)
        with torch.no_grad():
            return metrics.nll(predict(Xv), yv), fitted

    rest = {"mc_dropout": (dropout, grids["mc_dropout"]),
            "laplace_last_layer": (laplace, grids["laplace_last_layer"])}  # fmt: skip
    return {**tuned, **protocol.tune_all(rest)}


@register
def optim_digits(
    *, scale: Scale, device: torch.device, seed: int = 0, n_seeds: int | None = None
) -> dict[str, Any]:
    """Digits under the protocol: each method tuned on validation NLL, scored once on test.

    Sizes (``protocol.by_scale``): ci, an MLP 64-32-32-10 trained 20 epochs on 1 seed; full,
    64-128-128-10 for 100 epochs on 5 seeds. Every method gets the same epochs, batch, prior
    and cosine schedule, and a grid of the same size (``DIGITS_GRIDS`` of the scale).

    Returns:
        ``summary`` (mean and sd over seeds of every score, ``protocol.summarise_runs``),
        ``per_seed`` scores, ``tuned`` (each seed's validation table and winner), the
        ``reliability`` diagram of the first seed, and the sizes.
    """
    scale = protocol.as_scale(scale)
    sizes = _digits_sizes(scale)
    grids = protocol.by_scale(scale, ci=DIGITS_GRIDS["ci"], full=DIGITS_GRIDS["full"])
    seeds = protocol.seeds(scale, base=seed, n_seeds=n_seeds, ci=1, full=5)
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
    tables: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
    diagrams: dict[str, Any] = {}
    for s in seeds:
        parts = digits_splits(s, device)
        for name, tuned in _tune_seed(s, parts, sizes, grids, device).items():
            scores, test_probs = _scores(tuned.payload.predict, parts)  # test touched once
            runs[name].append(scores)
            tables[name].append(tuned.as_dict())
            if s == seeds[0]:
                diagrams[name] = reliability(test_probs, parts["test"][1])
    return {"seeds": seeds, "sizes": sizes, "grids": grids, "fixed": DIGITS_FIXED,
            "n_test": len(parts["test"][1]), "per_seed": runs, "tuned": tables,
            "summary": {m: protocol.summarise_runs(r) for m, r in runs.items()},
            "reliability": diagrams}  # fmt: skip


def _predict_all(name: str, net, opt, inputs: dict[str, Tensor], n_samples: int):
    """Probabilities of a trained network (Adam, SGD) or of a BLR optimizer's predictive."""
    if name in ("adam", "sgd"):
        with torch.no_grad():
            return {k: torch.softmax(net(x), -1) for k, x in inputs.items()}
    return {k: optim.predict(net, opt, x, n_samples=n_samples) for k, x in inputs.items()}
