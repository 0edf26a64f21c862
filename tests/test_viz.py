"""blrlib.viz: every public function draws on the non-interactive Agg backend what it says.

Each figure is checked through its artists (lines, collections, titles, slider names), and
where a drawn quantity has an independent reference (a density, an ellipse, a share of draws)
against that reference.
"""

from __future__ import annotations

import math
import warnings

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg", force=True)

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PathCollection, PolyCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from blrlib import viz  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _widget_names(widget) -> set[str]:
    return {getattr(c, "description", "") for c in widget.children} - {""}


def test_gaussian_pdf_is_the_normal_density():
    grid = torch.linspace(-3.0, 4.0, 50)
    ref = torch.distributions.Normal(0.3, math.sqrt(0.7)).log_prob(grid).exp()
    torch.testing.assert_close(viz.gaussian_pdf(grid, 0.3, 0.7), ref)


def test_plot_gaussian_and_snapshots_draw_one_curve_per_iteration():
    grid = torch.linspace(-3.0, 3.0, 40)
    _, ax = plt.subplots()
    viz.plot_gaussian(ax, grid, 0.5, 2.0, label="q")
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_ydata(), viz.gaussian_pdf(grid, 0.5, 2.0).numpy())
    path = [(0.0, 1.0), (0.5, 0.5), (1.0, 0.25)]
    density = viz.gaussian_pdf(grid, 1.0, 0.25)
    fig = viz.snapshots(path, grid, density, [0, 1, 10], title="t")
    ax = fig.axes[0]
    assert isinstance(fig, Figure) and ax.get_title() == "t"
    assert len(ax.get_lines()) == 3 and any(isinstance(c, PolyCollection) for c in ax.collections)
    # iteration 10 is past the path's end: the last q is drawn
    np.testing.assert_allclose(ax.get_lines()[2].get_ydata(), density.numpy())
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["exact posterior", "q after 0 steps", "q after 1 steps", "q after 10 steps"]


def test_plot_ellipse_lies_on_the_mahalanobis_circle():
    mean, cov = torch.tensor([1.0, -1.0]), torch.tensor([[2.0, 0.6], [0.6, 1.0]])
    _, ax = plt.subplots()
    (line,) = viz.plot_ellipse(ax, mean, cov, radius=2.0)
    pts = torch.tensor(np.stack([line.get_xdata(), line.get_ydata()], -1)) - mean
    dist2 = (pts @ torch.linalg.inv(cov) * pts).sum(-1)
    torch.testing.assert_close(dist2, torch.full_like(dist2, 4.0))


def test_plot_gmm_and_em_figure():
    y = torch.randn(30, 2)
    w, means = torch.tensor([0.4, 0.6]), torch.tensor([[0.0, 0.0], [2.0, 1.0]])
    covs = torch.eye(2).expand(2, 2, 2)
    _, ax = plt.subplots()
    viz.plot_gmm(ax, y, w, means, covs)
    assert len(ax.get_lines()) == 4  # 1- and 2-sigma ellipses of two components
    (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert points.get_offsets().shape == (30, 2)
    loglik = [-3.0, -2.5, -2.4]
    fig = viz.em_figure(y, [(w, means, covs)] * 3, loglik, 1)
    left, right = fig.axes
    assert left.get_title() == "after 1 EM steps"
    np.testing.assert_allclose(right.get_lines()[0].get_ydata(), loglik)
    np.testing.assert_allclose(right.collections[0].get_offsets(), [[1, -2.5]])


def test_relaxation_figure_shows_the_share_of_positive_draws():
    lam, taus = 0.5, [0.1, 1.0]
    fig = viz.relaxation_figure(lam, taus, n=4000)
    assert len(fig.axes) == 2
    p = 1 / (1 + math.exp(-2 * lam))  # P(+1) = sigmoid(2 lam) at every temperature
    for ax, tau in zip(fig.axes, taus, strict=True):
        title = ax.get_title()
        assert title.startswith(f"tau = {tau:g}")
        share = float(title.rsplit(":", 1)[1])
        # 4000 draws: standard error 0.007; 0.04 is 5 of them plus the title's rounding
        assert abs(share - p) < 0.04


def test_enumeration_and_binary_curves_figures():
    result = {
        "excess_loss": {"bayesbinn": [0.1, 0.2], "ste": [0.3, 0.0]},
        "marginals": {"exact": [[0.2, 0.9]], "bayesbinn": [[0.25, 0.8]],
                      "mean_field_from_0": [[0.3, 0.85]]},
    }  # fmt: skip
    left, right = viz.enumeration_figure(result).axes
    assert len(left.collections) == 2 and len(right.collections) == 2
    assert len(right.get_lines()) == 1  # the diagonal
    curve = [[1.0, 0.5], [0.5, 0.8]]
    digits = {"curves": [{"ste": curve, "bayesbinn": curve}]}
    temperature = {"temperatures": {"1e-10": [{"curve": curve}], "1": [{"curve": curve}]}}
    left, right = viz.binary_curves_figure(digits, temperature).axes
    assert len(left.get_lines()) == 2 and len(right.get_lines()) == 2
    assert left.get_yscale() == "log"
    np.testing.assert_allclose(left.get_lines()[0].get_ydata(), [1.0, 0.5])


def test_spike_slab_figure_draws_q_and_a_responsibility_in_0_1():
    fig = viz.spike_slab_figure(0.8, 100.0, 1.0)
    q_line, r_line = fig.axes[0].get_lines()
    r = r_line.get_ydata()
    assert ((r >= 0) & (r <= 1)).all() and q_line.get_ydata().max() > 0
    assert fig.axes[0].get_title().startswith("pi1 = 0.80")


def test_plot_trace_draws_a_density_and_a_trace_per_variable():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

        idata = arviz.from_dict(posterior={"x": np.random.default_rng(0).normal(size=(2, 50))})
        axes = viz.plot_trace(idata)
    assert np.asarray(axes).shape == (1, 2)


def test_explorers_have_their_sliders_and_draw():
    calls = []

    def run(rho, n):
        calls.append((rho, n))
        return [(0.0, 1.0)] * (n + 1)

    grid = torch.linspace(-2.0, 2.0, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Agg cannot show a figure
        explorer = viz.blr_explorer(run, grid, viz.gaussian_pdf(grid, 0.0, 1.0))
        explorer.update()
        assert _widget_names(explorer) == {"rho", "iterations"}
        assert calls[-1] == (0.2, 10)  # the sliders' initial values
        y, moments = torch.randn(10, 2), [(torch.ones(1), torch.zeros(1, 2), torch.eye(2)[None])]
        em = viz.em_explorer(y, moments * 3, [-1.0, -0.9, -0.8])
        assert _widget_names(em) == {"iteration"} and em.children[0].max == 2
        assert _widget_names(viz.relaxation_explorer()) == {"lam", "log10_tau"}
        assert _widget_names(viz.spike_slab_explorer()) == {"pi1", "log10_s0", "m"}
