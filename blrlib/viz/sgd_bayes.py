"""Constant SGD's stationary cloud against the posterior, by rate, batch and preconditioner.

Used in :doc:`/book/sgd_bayes`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import Tensor

from blrlib.viz.basics import plot_ellipse

__all__ = ["PRECONDITIONERS", "sgd_cloud_explorer", "sgd_cloud_figure"]


PRECONDITIONERS = ("none", "diagonal", "full")
"""The preconditioners H of :func:`sgd_cloud_figure`: I, diagonal H* and full H* (Theorem 2)."""


def sgd_cloud_figure(
    A: Tensor, C: Tensor, *, n_data: int, settings: Sequence[tuple[float, int, str]]
) -> Figure:
    """Constant SGD's stationary Gaussian against the posterior N(theta*, (N A)^-1), 2-D.

    One panel per setting (eps / eps*, batch size S, preconditioner): the 2-sigma ellipses of
    the discrete-time stationary covariance (:func:`blrlib.sgd_bayes.stationary_covariance`)
    and of the posterior, centred at theta* = 0, with the KL divergence between them in the
    title; eps* is the KL-optimal rate of the batch size (Mandt et al. 2017, Theorem 1).

    Args:
        A: the Hessian of the mean loss, (2, 2).
        C: the single-example gradient noise covariance, (2, 2).
        n_data: N.
        settings: (eps / eps*, S, one of ``PRECONDITIONERS``) per panel.

    Raises:
        ValueError: an unknown preconditioner (an unstable setting draws no ellipse).
    """
    from blrlib import sgd_bayes

    posterior = torch.linalg.inv(n_data * A)
    centre = torch.zeros(2, dtype=A.dtype)
    fig, axes = plt.subplots(1, len(settings), figsize=(3.4 * len(settings), 3.4))
    axes = [axes] if len(settings) == 1 else list(axes)
    for ax, (ratio, batch_size, name) in zip(axes, settings, strict=True):
        if name not in PRECONDITIONERS:
            raise ValueError(f"settings: preconditioner must be one of {PRECONDITIONERS}")
        eps = ratio * sgd_bayes.optimal_learning_rate(C, batch_size=batch_size, n_data=n_data)
        H = None
        if name != "none":
            diag = name == "diagonal"
            H = sgd_bayes.optimal_preconditioner(
                C, batch_size=batch_size, eps=eps, n_data=n_data, diagonal=diag
            )
        try:
            cov = sgd_bayes.stationary_covariance(
                A, C, eps=eps, batch_size=batch_size, preconditioner=H, discrete=True
            )
        except ValueError:
            title = "unstable: no stationary law"
        else:
            plot_ellipse(ax, centre, cov, color="C0", label="SGD iterates")
            kl = float(sgd_bayes.gaussian_kl(centre, cov, centre, posterior))
            title = f"KL = {kl:.3f}"
        plot_ellipse(ax, centre, posterior, color="C3", label="posterior")
        ax.set_title(f"eps = {ratio:g} eps*, S = {batch_size}, H: {name}\n{title}", fontsize=9)
        ax.set_aspect("equal")
    axes[0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def sgd_cloud_explorer(A: Tensor, C: Tensor, *, n_data: int):
    """Sliders for log2(eps / eps*) and the batch size, and a preconditioner menu, drawing
    :func:`sgd_cloud_figure` (needs a live kernel; the chapter also draws a few settings)."""
    import ipywidgets as widgets

    def show(log2_eps_ratio: float, batch_size: int, preconditioner: str) -> None:
        setting = (2.0**log2_eps_ratio, batch_size, preconditioner)
        plt.show(sgd_cloud_figure(A, C, n_data=n_data, settings=[setting]))

    return widgets.interactive(
        show,
        log2_eps_ratio=widgets.FloatSlider(value=0.0, min=-3.0, max=4.0, step=0.25),
        batch_size=widgets.IntSlider(value=10, min=1, max=min(n_data, 100)),
        preconditioner=widgets.Dropdown(options=list(PRECONDITIONERS), value="none"),
    )
