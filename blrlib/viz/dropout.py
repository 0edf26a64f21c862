"""The spike-and-slab posterior of one weight and its responsibility.

Used in :doc:`/book/dropout`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

__all__ = ["spike_slab_explorer", "spike_slab_figure"]


def spike_slab_figure(pi1: float, s0: float, m: float, s: float = 4.0) -> Figure:
    """One unit's spike-and-slab q (Eq 41), its exact responsibility r(theta) (Eq 32) and the
    error of Eq 85-86 against the exact slab expectations (``blrlib.dropout.entropy_terms``)."""
    from blrlib import dropout, families

    q = families.SpikeSlab(pi1, s0, n_units=1, unit_dim=1, dtype=torch.float64)
    lam = q.natural_from_moments(torch.tensor([[m]]), torch.tensor([[[s]]]))
    grid = torch.linspace(m - 4 / s**0.5 - 1, m + 4 / s**0.5 + 1, 800, dtype=torch.float64)
    g, h = dropout.entropy_terms(q, lam)
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(grid, q.log_prob(lam, grid[:, None]).exp(), label="q(theta)")
    ax.plot(grid, q.responsibilities(lam, grid[:, None])[:, 0], "--", label="r(theta)")
    ax.set_ylim(0, max(1.05, 1.1 * float(pi1 * (s / 6.283) ** 0.5)))
    ax.set_xlabel("theta")
    err = f"Eq 85 error {abs(float(g[0])):.2g}, Eq 86 error {abs(float(h[0]) + s) / s:.2g} (rel.)"
    ax.set_title(f"pi1 = {pi1:.2f}, s0 = {s0:.3g}, m = {m:.2f}: {err}", fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    return fig


def spike_slab_explorer():
    """Sliders over (pi1, log10 s0, m) drawing :func:`spike_slab_figure` (needs a live kernel;
    the chapter also draws static panels of the same figure)."""
    import ipywidgets as widgets

    def show(pi1: float, log10_s0: float, m: float) -> None:
        plt.show(spike_slab_figure(pi1, 10.0**log10_s0, m))

    return widgets.interactive(
        show,
        pi1=widgets.FloatSlider(value=0.8, min=0.05, max=1.0, step=0.05),
        log10_s0=widgets.FloatSlider(value=2.0, min=-4.0, max=6.0, step=0.5),
        m=widgets.FloatSlider(value=1.0, min=-2.0, max=2.0, step=0.05),
    )
