"""Figures for the chapters: 1-D posteriors, BLR paths, and explorers with a static fallback.

    from blrlib import viz
    fig, ax = plt.subplots()
    viz.plot_gaussian(ax, grid, m=0.3, var=0.15, label="BLR")   # a Gaussian density on a grid
    explorer = viz.blr_explorer(run, grid, density)            # sliders for rho and iterations

Nothing here computes a result: the functions draw what blrlib computed. ``basics`` holds what
several chapters draw (densities, ellipses, trace plots); every other module holds the figures
of the chapter it is named after, each explorer (ipywidgets, needs a live kernel) next to the
static figure that a rendered page shows instead.

Used by every chapter's figures, first in :doc:`/book/blr`.
"""

from blrlib.viz.basics import gaussian_pdf, plot_ellipse, plot_gaussian, plot_trace
from blrlib.viz.binary import (
    binary_curves_figure,
    enumeration_figure,
    relaxation_explorer,
    relaxation_figure,
)
from blrlib.viz.blr import blr_explorer, blr_settings_figure, snapshots
from blrlib.viz.conjugate_em import em_explorer, em_figure, plot_gmm
from blrlib.viz.dropout import spike_slab_explorer, spike_slab_figure
from blrlib.viz.gd_newton_ridge import sharp_flat_explorer, sharp_flat_figure
from blrlib.viz.optim import precision_memory_explorer, precision_memory_figure
from blrlib.viz.sgd_bayes import PRECONDITIONERS, sgd_cloud_explorer, sgd_cloud_figure
from blrlib.viz.vi import site_explorer, site_figure

__all__ = [
    "PRECONDITIONERS",
    "binary_curves_figure",
    "blr_explorer",
    "blr_settings_figure",
    "em_explorer",
    "em_figure",
    "enumeration_figure",
    "gaussian_pdf",
    "plot_ellipse",
    "plot_gaussian",
    "plot_gmm",
    "plot_trace",
    "precision_memory_explorer",
    "precision_memory_figure",
    "relaxation_explorer",
    "relaxation_figure",
    "sgd_cloud_explorer",
    "sgd_cloud_figure",
    "sharp_flat_explorer",
    "sharp_flat_figure",
    "site_explorer",
    "site_figure",
    "snapshots",
    "spike_slab_explorer",
    "spike_slab_figure",
]
