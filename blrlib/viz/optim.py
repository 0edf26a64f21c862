"""The memory of Eq 36's precision update: what is left of h_0 after t steps.

Used in :doc:`/book/optim`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

__all__ = ["precision_memory_explorer", "precision_memory_figure"]


def precision_memory_figure(
    betas: Sequence[float],
    *,
    hess: float = 0.5,
    noise: float = 0.3,
    h0s: Sequence[float] = (0.1, 1.0),
    n_steps: int = 800,
    seed: int = 0,
) -> Figure:
    """Eq 36's precision update h <- (1 - beta) h + beta h_hat from two starts h_0, one panel
    per rate beta, with a noisy Hessian estimate h_hat = hess (1 + noise z), z ~ N(0, 1).

    Every step is :func:`blrlib.families.diag_gaussian.blr_update_` on one weight whose mean
    is held at 0 (``lr=0``), with the same draws of h_hat for both starts. The dotted line is
    what is left of each start, (1 - beta)^t h_0; the title gives it after ``n_steps``.

    Args:
        betas: the precision rates, each in (0, 1]; one panel each.
        hess: the mean of the Hessian estimate, > 0. noise: its relative sd, >= 0.
        h0s: the initial precisions per example, each > 0. n_steps: >= 1. seed: of the draws.

    Raises:
        ValueError: a rate outside (0, 1], a start or ``hess`` not positive, ``noise`` < 0 or
            ``n_steps`` < 1 (each named).
    """
    from blrlib.families.diag_gaussian import blr_update_

    if not betas or any(not 0.0 < b <= 1.0 for b in betas):
        raise ValueError(f"betas must be non-empty, each in (0, 1]; got {list(betas)}")
    if hess <= 0 or any(h <= 0 for h in h0s):
        raise ValueError(f"hess and h0s must be positive; got {hess}, {list(h0s)}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0; got {noise}")
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1; got {n_steps}")
    gen = torch.Generator().manual_seed(seed)
    h_hat = hess * (1 + noise * torch.randn(n_steps, generator=gen, dtype=torch.float64))
    steps = torch.arange(n_steps + 1, dtype=torch.float64)
    fig, axes = plt.subplots(1, len(betas), figsize=(3.6 * len(betas), 3), sharey=True)
    axes = [axes] if len(betas) == 1 else list(axes)
    for ax, beta in zip(axes, betas, strict=True):
        for k, h0 in enumerate(h0s):
            h = [torch.full((1,), float(h0), dtype=torch.float64)]
            m = [torch.zeros(1, dtype=torch.float64)]
            path = [float(h0)]
            for t in range(n_steps):
                estimate = [h_hat[t : t + 1].clone()]  # blr_update_ may overwrite it
                grad = [torch.zeros_like(m[0])]
                blr_update_(m, h, grad, estimate, lr=0.0, beta=beta, n_data=1.0, prior_prec=0.0)
                path.append(float(h[0]))
            ax.plot(steps.numpy(), path, color=f"C{k}", lw=1, label=f"h0 = {h0:g}")
            ax.plot(steps.numpy(), (h0 * (1 - beta) ** steps).numpy(), ":", color=f"C{k}")
        ax.axhline(hess, color="0.5", lw=0.8)
        left = (1 - beta) ** n_steps
        ax.set_title(f"beta = {beta:g}: (1 - beta)^T = {left:.2g}", fontsize=9)
        ax.set_xlabel("step t")
    axes[0].set_ylabel("h (precision per example)")
    axes[0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def precision_memory_explorer(*, n_steps: int = 800):
    """Sliders over log10 of beta and the estimate's noise drawing
    :func:`precision_memory_figure` (needs a live kernel; the chapter draws a few rates)."""
    import ipywidgets as widgets

    def show(log10_beta: float, noise: float) -> None:
        plt.show(precision_memory_figure([10.0**log10_beta], noise=noise, n_steps=n_steps))

    beta = widgets.FloatSlider(value=math.log10(10 / n_steps), min=-4.0, max=0.0, step=0.1)
    noise = widgets.FloatSlider(value=0.3, min=0.0, max=2.0, step=0.1)
    return widgets.interactive(show, log10_beta=beta, noise=noise)
