"""EM on a Gaussian mixture: the components after each step and the log-likelihood.

Used in :doc:`/book/conjugate_em`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from blrlib.viz.basics import plot_ellipse

__all__ = ["em_explorer", "em_figure", "plot_gmm"]


def plot_gmm(ax: Axes, y: Tensor, weights: Tensor, means: Tensor, covs: Tensor) -> None:
    """Data points and each Gaussian component's 1- and 2-sigma ellipses (2-D data)."""
    ax.scatter(y[:, 0].numpy(), y[:, 1].numpy(), s=4, color="0.6")
    for k in range(means.shape[0]):
        for radius in (1.0, 2.0):
            width = 2.5 * weights[k].item() + 0.5
            plot_ellipse(ax, means[k], covs[k], radius=radius, color=f"C{k}", lw=width)
    ax.set_aspect("equal")


def em_figure(y: Tensor, moments: Sequence, loglik: Sequence[float], iteration: int) -> Figure:
    """The mixture after ``iteration`` EM steps and the log-likelihood trace (a static figure).

    Args:
        y: 2-D data (N, 2).
        moments: per iteration, (weights (K,), means (K, 2), covariances (K, 2, 2)).
        loglik: the mean log-likelihood per iteration.
        iteration: which iteration to draw.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    plot_gmm(left, y, *moments[iteration])
    left.set_title(f"after {iteration} EM steps")
    right.plot(range(len(loglik)), loglik, color="0.3")
    right.scatter([iteration], [loglik[iteration]], color="C3", zorder=3)
    right.set_xlabel("iteration")
    right.set_ylabel("mean log-likelihood")
    fig.tight_layout()
    return fig


def em_explorer(y: Tensor, moments: Sequence, loglik: Sequence[float]):
    """An ipywidgets slider over EM iterations drawing :func:`em_figure` (needs a live kernel;
    a static page shows :func:`em_figure` at chosen iterations instead)."""
    import ipywidgets as widgets

    def show(iteration: int) -> None:
        plt.show(em_figure(y, moments, loglik, iteration))

    slider = widgets.IntSlider(value=0, min=0, max=len(loglik) - 1)
    return widgets.interactive(show, iteration=slider)
