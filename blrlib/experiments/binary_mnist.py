"""Sec 4.5 on real images: BayesBiNN against STE on 5,000 MNIST digits, under the protocol.

    from blrlib import experiments
    record = experiments.run("binary_mnist", scale="ci")
    record["result"]["summary"]["bayesbinn_mode"]["accuracy"]   # mean, sd and values

``binary_mnist``: per seed, the split of ``optim_mnist.mnist_splits`` (3,200 training, 800
validation and 1,000 test digits of ``data.mnist_5k``, and the two out-of-distribution sets
made from the test digits). The binary MLP of ``binary_digits`` (``binary.binary_mlp``: no
biases, BatchNorm without affine parameters, a fixed factor 4 on the logits) is trained by
STE (Adam + clip) and by BayesBiNN with the reference code's settings (lam_0 = +-10 with a
random sign, tau = 1e-10, one draw per step, batches of 100, cosine schedule:
``binary.train``); each method's lr comes from a grid of four (``binary.DIGITS_GRIDS``) by
the validation NLL of its binary network, and the winner is scored once on test with
``optim_mnist.scores``: STE and BayesBiNN's mode sign(lam), and BayesBiNN's posterior
predictive (probabilities averaged over binary draws).
"""

from __future__ import annotations

from typing import Any

import torch

from blrlib import optim
from blrlib.experiments import protocol
from blrlib.experiments._registry import Scale, register
from blrlib.experiments.binary import DIGITS_GRIDS, DIGITS_TAU, UNDECIDED, binary_mlp, train
from blrlib.experiments.optim_mnist import mnist_splits, scores
from blrlib.optim.bayesbinn import undecided_fraction

__all__ = ["PUBLISHED", "binary_mnist"]

GRIDS = DIGITS_GRIDS
"""The four learning rates of ``binary_digits`` for each method (their ranges are argued in
``binary.DIGITS_GRIDS``)."""
PUBLISHED = dict(accuracy=0.9888, sd=0.0005, runs=5, n_train=60_000,
                 network="784-2048-2048-2048-10, dropout 0.2", epochs=500)  # fmt: skip
"""BayesBiNN's MNIST test accuracy in Meng et al. (2020): mean and sd over 5 runs, trained on
the 60,000 MNIST training images for 500 epochs, with the reference code's network."""
SCORED = ("ste", "bayesbinn_mode", "bayesbinn_predictive")


def _sizes(scale: Scale) -> dict[str, Any]:
    """The hidden widths, the epochs and the number of binary draws of the predictive.

    ci: about 4 s of CPU. full: about 165 s of CPU a seed on one thread (measured on seed 0:
    eight trainings of 40 epochs), so about 14 minutes for the 5 seeds.
    """
    return protocol.by_scale(
        scale,
        ci=dict(hidden=[32], epochs=3, draws=8),
        full=dict(hidden=[256, 256], epochs=40, draws=32),
    )


def _make_opt(method: str, net: torch.nn.Module, n: int, lr: float, seed: int) -> Any:
    if method == "ste":
        return optim.STE(net.parameters(), lr=lr, beta=0.9, beta2=0.999)
    gen = torch.Generator(device=next(net.parameters()).device).manual_seed(seed)
    return optim.BayesBiNN(net.parameters(), n_data=n, lr=lr, tau=DIGITS_TAU, generator=gen)


def _seed(s: int, sizes: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """One seed: both methods tuned on the validation NLL of the binary network, the winners
    scored once on test and on the OOD sets."""
    parts = mnist_splits(s, device)
    tr, (Xv, yv) = parts["train"], parts["val"]

    def objective(method: str) -> Any:
        def score(hp: dict[str, float]) -> tuple[float, Any]:
            widths = [784, *sizes["hidden"], 10]
            net = binary_mlp(widths, init=method, device=device, seed=s, dtype=Xv.dtype)
            opt = _make_opt(method, net, len(tr[0]), hp["lr"], s)
            curve = train(net, opt, tr, epochs=sizes["epochs"], seed=s, val=(Xv, yv))
            return curve[-1][0], (net, opt, curve)

        return score

    tuned = protocol.tune_all({m: (objective(m), g) for m, g in GRIDS.items()})
    ste, ste_opt, ste_curve = tuned["ste"].payload
    bb, bb_opt, bb_curve = tuned["bayesbinn"].payload

    def predictor(net: Any, opt: Any, k: int) -> Any:
        return lambda x: optim.predict(net, opt, x, n_samples=k)

    k = sizes["draws"]
    lam = torch.cat([p.detach().reshape(-1) for p in bb.parameters()])
    return {
        "ste": scores(predictor(ste, ste_opt, 0), parts),
        "bayesbinn_mode": scores(predictor(bb, bb_opt, 0), parts),
        "bayesbinn_predictive": scores(predictor(bb, bb_opt, k), parts),
        "tuning": {m: t.as_dict() for m, t in tuned.items()},
        "curves": {"ste": ste_curve, "bayesbinn": bb_curve},
        "undecided": undecided_fraction([lam], threshold=UNDECIDED),
    }


@register
def binary_mnist(
    *, scale: Scale, device: torch.device, seed: int = 0, n_seeds: int | None = None
) -> dict[str, Any]:
    """STE (Adam + clip) against BayesBiNN (tau = 1e-10, lam_0 = +-10) on MNIST digits.

    Sizes (``protocol.by_scale``): ci, a binary MLP 784-32-10 trained 3 epochs on 1 seed
    (8 draws for the predictive); full, 784-256-256-10 trained 40 epochs on 5 seeds (32
    draws). Both methods get the same network, epochs, batches and schedule, and four
    learning rates each.

    Returns:
        ``summary`` (mean and sd over seeds of accuracy, NLL, ECE, the OOD AUROCs and the
        mean entropies, for STE, BayesBiNN's mode and its predictive), ``paired`` (paired
        differences: the mode and the predictive less STE), ``per_seed`` scores, ``tuning``
        (each seed's validation table), the winners' validation ``curves`` ([NLL, accuracy]
        after each epoch), BayesBiNN's ``undecided`` fraction of weights, and the sizes.
    """
    scale = protocol.as_scale(scale)
    sizes = _sizes(scale)
    seeds = protocol.seeds(scale, base=seed, n_seeds=n_seeds, ci=1, full=5)
    per_seed = [_seed(s, sizes, device)
                for s in protocol.progress(seeds, scale, "binary_mnist seeds")]  # fmt: skip
    runs = {m: [r[m] for r in per_seed] for m in SCORED}
    paired = {
        f"{a}-ste:{key}": protocol.paired_difference(
            [r[key] for r in runs[a]], [r[key] for r in runs["ste"]]
        )
        for a in ("bayesbinn_mode", "bayesbinn_predictive")
        for key in runs["ste"][0]
    }
    return {
        "seeds": seeds, "sizes": sizes, "grids": GRIDS, "tau": DIGITS_TAU,
        "summary": {m: protocol.summarise_runs(r) for m, r in runs.items()},
        "paired": paired, "per_seed": runs,
        **{k: [r[k] for r in per_seed] for k in ("tuning", "curves", "undecided")},
    }  # fmt: skip
