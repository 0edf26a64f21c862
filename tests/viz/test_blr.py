"""blrlib.viz.blr: each figure draws what it says, checked through its artists."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from blrlib import blr, families, landscapes, viz
from tests.viz._widgets import widget_names

F64 = torch.float64


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


def _wall_run():
    """The BLR on the wall of Fig 1(a), as the BLR chapter runs it."""
    loss, q = landscapes.Wall(), families.Gaussian(1, dtype=F64)
    lam0 = q.natural_from_moments(torch.tensor([-2.0], dtype=F64), torch.tensor([[3.0]], dtype=F64))

    def expected(mu):
        m, cov = q.mean_cov_from_expectation(mu)
        return loss.expected(m, cov[0])

    def run(rho, n_steps):
        path = blr.run(q, lam0, rho=rho, n_steps=n_steps, estimator="exact", expected_loss=expected)
        return [(float(m[0]), float(c[0, 0])) for m, c in map(q.mean_cov, path)]

    grid, density, _ = landscapes.grid_posterior(loss, -4.0, 2.5, n=801)
    return run, grid, density


def test_blr_settings_figure_one_panel_per_rho_two_curves_each():
    run, grid, density = _wall_run()
    fig = viz.blr_settings_figure(run, grid, density, [0.2, 0.5], 20)
    assert [ax.get_title() for ax in fig.axes] == ["rho = 0.2", "rho = 0.5"]
    assert all(len(ax.lines) == 2 for ax in fig.axes)  # q after 19 and after 20 steps
    with pytest.raises(ValueError, match="n_steps"):
        viz.blr_settings_figure(run, grid, density, [0.2], 0)


def test_blr_explorer_has_its_sliders_and_draws():
    calls = []

    def run(rho, n):
        calls.append((rho, n))
        return [(0.0, 1.0)] * (n + 1)

    grid = torch.linspace(-2.0, 2.0, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Agg cannot show a figure
        explorer = viz.blr_explorer(run, grid, viz.gaussian_pdf(grid, 0.0, 1.0))
        explorer.update()
    assert widget_names(explorer) == {"rho", "iterations"}
    assert calls[-1] == (0.2, 10)  # the sliders' initial values
