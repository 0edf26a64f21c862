"""The BLR's path in 1-D against the exact posterior: snapshots, settings and an explorer.

Used in :doc:`/book/blr`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from blrlib.viz.basics import plot_gaussian

__all__ = ["Path1D", "blr_explorer", "blr_settings_figure", "snapshots"]


Path1D = Sequence[tuple[float, float]]
"""A BLR path in 1-D: the (mean, variance) of q after each iteration, the initial q first."""


def snapshots(
    path: Path1D,
    grid: Tensor,
    density: Tensor,
    iterations: Sequence[int],
    *,
    ax: Axes | None = None,
    title: str = "",
) -> Figure:
    """The exact posterior and the BLR's Gaussian after the given iterations (a static figure)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.2))
    ax.fill_between(grid.numpy(), density.numpy(), color="0.85", label="exact posterior")
    cmap = plt.get_cmap("viridis")
    for i, t in enumerate(iterations):
        m, var = path[min(t, len(path) - 1)]
        plot_gaussian(
            ax,
            grid,
            m,
            var,
            color=cmap(i / max(len(iterations) - 1, 1)),
            label=f"q after {t} steps",
        )
    ax.set_xlabel(r"$\theta$")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)
    return ax.figure


def blr_explorer(
    run: Callable[[float, int], Path1D],
    grid: Tensor,
    density: Tensor,
    *,
    rhos: tuple[float, float, float] = (0.05, 1.0, 0.05),
    max_iterations: int = 100,
):
    """An ipywidgets explorer: pick rho and the number of iterations, see q against the posterior.

    Args:
        run: (rho, n_steps) -> the 1-D path of the BLR (means and variances).
        grid, density: the exact posterior on a grid.
        rhos: (min, max, step) of the learning-rate slider.
        max_iterations: the largest number of iterations on the slider.

    Returns:
        An ``ipywidgets.interactive`` widget. It needs a live kernel; the chapters also draw the
        same picture with :func:`snapshots`, which is what a static page shows.
    """
    import ipywidgets as widgets

    def show(rho: float, iterations: int) -> None:
        path = run(rho, iterations)
        fig = snapshots(path, grid, density, [0, iterations], title=f"rho = {rho:.2f}")
        plt.show(fig)

    return widgets.interactive(
        show,
        rho=widgets.FloatSlider(value=0.2, min=rhos[0], max=rhos[1], step=rhos[2]),
        iterations=widgets.IntSlider(value=10, min=0, max=max_iterations),
    )


def blr_settings_figure(
    run: Callable[[float, int], Path1D],
    grid: Tensor,
    density: Tensor,
    rhos: Sequence[float],
    n_steps: int,
) -> Figure:
    """The static page of :func:`blr_explorer`: q after ``n_steps - 1`` and ``n_steps`` steps,
    one panel per learning rate; the two curves coincide where the iterates have settled.

    Args:
        run: (rho, n_steps) -> the 1-D path of the BLR (means and variances).
        grid, density: the exact posterior on a grid.
        rhos: the learning rates, one panel each.
        n_steps: the number of iterations, >= 1.
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1; got {n_steps}")
    fig, axes = plt.subplots(1, len(rhos), figsize=(3.6 * len(rhos), 3), sharey=True)
    axes = [axes] if len(rhos) == 1 else list(axes)
    for ax, rho in zip(axes, rhos, strict=True):
        path = run(rho, n_steps)
        snapshots(path, grid, density, [n_steps - 1, n_steps], ax=ax, title=f"rho = {rho:g}")
    fig.tight_layout()
    return fig
