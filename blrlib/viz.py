"""Figures for the chapters: 1-D posteriors, BLR paths, and an explorer with a static fallback.

    from blrlib import viz
    fig, ax = plt.subplots()
    viz.plot_gaussian(ax, grid, m=0.3, var=0.15, label="BLR")   # a Gaussian density on a grid
    explorer = viz.blr_explorer(run, grid, density)            # sliders for rho and iterations

Nothing here computes a result: the functions draw what blrlib computed.

Used by every chapter's figures, first in :doc:`/book/blr`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

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
]

Path1D = Sequence[tuple[float, float]]
"""A BLR path in 1-D: the (mean, variance) of q after each iteration, the initial q first."""


def gaussian_pdf(grid: Tensor, m: float, var: float) -> Tensor:
    """The density of N(m, var) on ``grid``."""
    return torch.exp(-((grid - m) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)


def plot_gaussian(ax: Axes, grid: Tensor, m: float, var: float, **style: object) -> None:
    """Draw the density of N(m, var) on ``ax`` over ``grid``."""
    ax.plot(grid.numpy(), gaussian_pdf(grid, m, var).numpy(), **style)


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


def plot_trace(idata, **kwargs: object):
    """ArviZ's trace plot (densities and traces per chain), without ArviZ's import-time notice."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing", category=FutureWarning)
        import arviz
    return arviz.plot_trace(idata, **kwargs)


def plot_ellipse(ax: Axes, mean: Tensor, cov: Tensor, *, radius: float = 2.0, **style: object):
    """The ellipse {mean + radius * L u : |u| = 1}, cov = L L^T, of a 2-D Gaussian on ``ax``."""
    angles = torch.linspace(0, 2 * math.pi, 100, dtype=cov.dtype)
    pts = mean[:, None] + radius * torch.linalg.cholesky(cov) @ torch.stack(
        (angles.cos(), angles.sin())
    )
    return ax.plot(pts[0].numpy(), pts[1].numpy(), **style)


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


# --- explorers: conjugate_em, dropout, vi ---


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
