"""Densities, ellipses and trace plots that several chapters draw on.

Used in :doc:`/book/primer` and later chapters.
"""

from __future__ import annotations

import math
import warnings

import torch
from matplotlib.axes import Axes
from torch import Tensor

__all__ = ["gaussian_pdf", "plot_ellipse", "plot_gaussian", "plot_trace"]


def gaussian_pdf(grid: Tensor, m: float, var: float) -> Tensor:
    """The density of N(m, var) on ``grid``."""
    return torch.exp(-((grid - m) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)


def plot_gaussian(ax: Axes, grid: Tensor, m: float, var: float, **style: object) -> None:
    """Draw the density of N(m, var) on ``ax`` over ``grid``."""
    ax.plot(grid.numpy(), gaussian_pdf(grid, m, var).numpy(), **style)


def plot_ellipse(ax: Axes, mean: Tensor, cov: Tensor, *, radius: float = 2.0, **style: object):
    """The ellipse {mean + radius * L u : |u| = 1}, cov = L L^T, of a 2-D Gaussian on ``ax``."""
    angles = torch.linspace(0, 2 * math.pi, 100, dtype=cov.dtype)
    pts = mean[:, None] + radius * torch.linalg.cholesky(cov) @ torch.stack(
        (angles.cos(), angles.sin())
    )
    return ax.plot(pts[0].numpy(), pts[1].numpy(), **style)


def plot_trace(idata, **kwargs: object):
    """ArviZ's trace plot (densities and traces per chain), without ArviZ's import-time notice."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing", category=FutureWarning)
        import arviz
    return arviz.plot_trace(idata, **kwargs)
