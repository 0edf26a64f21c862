"""Binary weights: the Concrete relaxation, the enumeration study and the training curves.

Used in :doc:`/book/binary`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

__all__ = ["binary_curves_figure", "enumeration_figure", "relaxation_explorer", "relaxation_figure"]


def relaxation_figure(lam: float, taus: Sequence[float], n: int = 20_000, seed: int = 0) -> Figure:
    """Histograms of the Concrete draws tanh((lam + delta) / tau) of Eq 50, one per tau, with
    the share of positive draws (which is p = sigmoid(2 lam) for every tau)."""
    from blrlib.families import SignBernoulli

    fig, axes = plt.subplots(1, len(taus), figsize=(3.2 * len(taus), 2.6), sharey=True)
    axes = [axes] if len(taus) == 1 else list(axes)
    p = float(torch.sigmoid(torch.tensor(2.0 * lam)))
    for ax, tau in zip(axes, taus, strict=True):
        q = SignBernoulli(1, tau=tau, dtype=torch.float64)
        gen = torch.Generator().manual_seed(seed)
        draws = q.relaxed_sample((torch.tensor([lam], dtype=torch.float64),), n, generator=gen)
        ax.hist(draws[:, 0].numpy(), bins=40, range=(-1, 1), density=True, color="C0")
        ax.set_title(f"tau = {tau:g}, share > 0: {float((draws > 0).double().mean()):.2f}")
        ax.set_xlabel("relaxed weight")
    axes[0].set_ylabel(f"density (p(+1) = {p:.2f})")
    fig.tight_layout()
    return fig


def relaxation_explorer():
    """Sliders for lam and log10 tau drawing :func:`relaxation_figure` (needs a live kernel; a
    static page shows :func:`relaxation_figure` at fixed values instead)."""
    import ipywidgets as widgets

    def show(lam: float, log10_tau: float) -> None:
        plt.show(relaxation_figure(lam, [10**log10_tau]))

    return widgets.interactive(
        show,
        lam=widgets.FloatSlider(value=0.5, min=-3.0, max=3.0, step=0.1),
        log10_tau=widgets.FloatSlider(value=-1.0, min=-3.0, max=0.5, step=0.1),
    )


def enumeration_figure(result: dict) -> Figure:
    """Left: excess loss over Eq 47's optimum per data set and method; right: BayesBiNN's and the
    exact mean-field marginals against the exact posterior marginals (binary_enumeration)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, (name, values) in enumerate(result["excess_loss"].items()):
        left.scatter(torch.arange(len(values)) + 0.2 * i, values, s=14, label=name)
    left.set_xlabel("data set (seed)")
    left.set_ylabel("loss - optimal loss (nats)")
    left.legend(fontsize=8, frameon=False)
    exact = torch.tensor(result["marginals"]["exact"]).flatten()
    for name in ("bayesbinn", "mean_field_from_0"):
        right.scatter(exact, torch.tensor(result["marginals"][name]).flatten(), s=6, label=name)
    right.plot([0, 1], [0, 1], "k--", lw=0.8)
    right.set_xlabel("exact posterior p(theta_j = +1)")
    right.set_ylabel("q(theta_j = +1)")
    right.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def binary_curves_figure(digits: dict, temperature: dict) -> Figure:
    """Validation NLL of the binary network (sign(lam)) after each epoch: left, the tuned STE
    and BayesBiNN of ``binary_digits``; right, BayesBiNN at each temperature of
    ``binary_temperature`` (first seed of each)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
    for name, curve in digits["curves"][0].items():
        left.plot(range(1, len(curve) + 1), [c[0] for c in curve], label=name)
    for tau, runs in temperature["temperatures"].items():
        curve = runs[0]["curve"]
        right.plot(range(1, len(curve) + 1), [c[0] for c in curve], label=f"tau = {tau}")
    left.set_ylabel("validation NLL of the mode")
    for ax, title in ((left, "tuned lr (BayesBiNN at tau = 1e-10)"), (right, "BayesBiNN, lr 0.1")):
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
