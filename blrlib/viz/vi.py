"""The Gaussian site of a logistic factor (Eq 58) against the log factor.

Used in :doc:`/book/vi`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from blrlib.viz.basics import gaussian_pdf

__all__ = ["site_explorer", "site_figure"]


def site_figure(settings: Sequence[tuple[float, float]], *, label: int = 1) -> Figure:
    """The Gaussian site of one logistic factor (Eq 58) against the log factor, per panel.

    For each (mean, sd) of a = x^T w under q, the site exp(alpha a + beta a^2) is
    ``ncvi.site_parameters`` of the factor sigmoid(+-a) (Eq 58 with a 1-D q), drawn shifted
    to agree with log sigmoid(+-a) at the mean, next to the second-order Taylor expansion of
    the log factor at the mean (what the delta method, or Laplace, would use) and the density
    of q(a). Eq 58's site has the expected slope and curvature where q has its mass.

    Args:
        settings: (mean, sd) of a under q, one panel each; sd > 0.
        label: the observed label y in {0, 1} (the factor is sigmoid(a) for 1, else 1 - it).

    Raises:
        ValueError: an sd that is not positive, or a label outside {0, 1}.
    """
    from blrlib import ncvi
    from blrlib.families import Gaussian

    if label not in (0, 1):
        raise ValueError(f"label must be 0 or 1, got {label!r}")
    f64 = torch.float64
    q = Gaussian(1, dtype=f64)
    factor = ncvi.LogisticFactors(torch.ones(1, 1, dtype=f64), torch.tensor([float(label)]))
    sign = 2.0 * label - 1.0
    a = torch.linspace(-8, 8, 400, dtype=f64)
    log_f = torch.nn.functional.logsigmoid(sign * a)
    fig, axes = plt.subplots(1, len(settings), figsize=(3.4 * len(settings), 3), sharey=True)
    axes = [axes] if len(settings) == 1 else list(axes)
    for ax, (mean, sd) in zip(axes, settings, strict=True):
        if not sd > 0:
            raise ValueError(f"settings: every sd must be positive, got {sd!r}")
        prec = torch.tensor([[1.0 / sd**2]], dtype=f64)
        lam = q.natural_from_mean_precision(torch.tensor([float(mean)], dtype=f64), prec)
        alpha, beta = (float(p.flatten()[0]) for p in ncvi.site_parameters(q, lam, factor))
        s_m = float(torch.sigmoid(torch.tensor(sign * mean)))
        at_mean = math.log(s_m)
        site = alpha * a + beta * a**2
        site = site - (alpha * mean + beta * mean**2) + at_mean
        d = a - mean  # Taylor: slope sign (1 - s_m), curvature -s_m (1 - s_m)
        taylor = at_mean + sign * (1 - s_m) * d - 0.5 * s_m * (1 - s_m) * d**2
        ax.plot(a.numpy(), log_f.numpy(), "k-", label="log factor")
        ax.plot(a.numpy(), site.numpy(), "C0--", label="Eq 58 site")
        ax.plot(a.numpy(), taylor.numpy(), "C1:", label="Taylor at the mean")
        density = gaussian_pdf(a, mean, sd**2)
        ax.fill_between(a.numpy(), -10.0, (-10.0 + 4 * density / density.max()).numpy(),
                        color="C0", alpha=0.15, label="q(a), scaled")  # fmt: skip
        ax.set_ylim(-10, 1)
        ax.set_xlabel("a = x^T w")
        ax.set_title(f"mean {mean:g}, sd {sd:g}: beta = {beta:.3f}", fontsize=9)
    axes[0].set_ylabel(f"log p(y = {label} | a)")
    axes[0].legend(fontsize=7, frameon=False, loc="lower left")
    fig.tight_layout()
    return fig


def site_explorer():
    """Sliders for the mean and log10 sd of a = x^T w under q and the label, drawing
    :func:`site_figure` (needs a live kernel; the chapter also draws static panels)."""
    import ipywidgets as widgets

    def show(mean: float, log10_sd: float, label: int) -> None:
        plt.show(site_figure([(mean, 10.0**log10_sd)], label=label))

    return widgets.interactive(
        show,
        mean=widgets.FloatSlider(value=1.0, min=-6.0, max=6.0, step=0.1),
        log10_sd=widgets.FloatSlider(value=0.0, min=-2.0, max=1.0, step=0.05),
        label=widgets.Dropdown(options=[0, 1], value=1),
    )
