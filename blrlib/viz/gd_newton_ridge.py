"""The sharp-and-flat loss of Fig 1(b) and its best Gaussian, as a figure and an explorer.

Used in :doc:`/book/gd_newton_ridge`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from blrlib.viz.basics import gaussian_pdf, plot_gaussian

__all__ = ["sharp_flat_explorer", "sharp_flat_figure"]


def sharp_flat_figure(scales: Sequence[float], *, lo: float = -2.5, hi: float = 5.5) -> Figure:
    """The posterior exp(-s f) / Z of the sharp-and-flat loss f of Fig 1(b) and its best
    Gaussian, one panel per scale s (the number of examples' role in ``SharpFlat``).

    The best Gaussian minimises the Bayes objective (Eq 2) on a grid of 321 means and 121
    variances (:func:`blrlib.landscapes.best_gaussian`), the BLR's fixed point up to the grid.
    """
    from blrlib import landscapes

    means = torch.linspace(lo, hi, 321, dtype=torch.float64)
    variances = torch.logspace(-5.0, 1.0, 121, dtype=torch.float64)
    fig, axes = plt.subplots(1, len(scales), figsize=(3.6 * len(scales), 3))
    axes = [axes] if len(scales) == 1 else list(axes)
    for ax, s in zip(axes, scales, strict=True):
        loss = landscapes.SharpFlat(scale=s)
        grid, density, _ = landscapes.grid_posterior(loss, lo, hi)
        m, var, objective = landscapes.best_gaussian(loss, means, variances)
        ax.fill_between(grid.numpy(), density.numpy(), color="0.85", label="posterior")
        plot_gaussian(ax, grid, m, var, color="C0", label="best Gaussian")
        ax.set_ylim(0, 1.15 * max(float(density.max()), float(gaussian_pdf(grid, m, var).max())))
        ax.set_title(f"scale {s:g}: m = {m:.2f}, L = {objective:.1f}", fontsize=9)
        ax.set_xlabel(r"$\theta$")
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def sharp_flat_explorer():
    """A slider over log10 of the scale drawing :func:`sharp_flat_figure` (needs a live kernel;
    the chapter also draws the figure at a few scales)."""
    import ipywidgets as widgets

    def show(log10_scale: float) -> None:
        plt.show(sharp_flat_figure([10.0**log10_scale]))

    slider = widgets.FloatSlider(value=0.0, min=-1.0, max=1.5, step=0.05)
    return widgets.interactive(show, log10_scale=slider)
