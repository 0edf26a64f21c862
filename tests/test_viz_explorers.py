"""The chapters' explorers and their static figures: the figures draw, the explorers build.

The explorers are ``ipywidgets.interactive`` objects; building one runs its drawing function
once, which needs no kernel frontend (matplotlib's Agg backend draws to memory).
"""

import matplotlib

matplotlib.use("Agg")

import ipywidgets
import matplotlib.pyplot as plt
import pytest
import torch

from blrlib import blr, families, landscapes, sgd_bayes, viz
from blrlib.experiments import sgd

F64 = torch.float64


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def problem():
    return sgd.regression(300, 2, seed=0, device=torch.device("cpu"))


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


def test_sharp_flat_figure_best_gaussian_moves_to_the_sharp_well():
    fig = viz.sharp_flat_figure([1.0, 20.0])
    titles = [ax.get_title() for ax in fig.axes]
    # the best Gaussian sits in the flat well (m near 2.4) at scale 1 and in the sharp one
    # (m = -1) at scale 20, as the chapter's grid search and exercise 2 find
    assert "m = 2.4" in titles[0] and "m = -1.00" in titles[1]


def test_sharp_flat_explorer_builds():
    widget = viz.sharp_flat_explorer()
    assert isinstance(widget, ipywidgets.interactive)
    assert [type(c).__name__ for c in widget.children[:-1]] == ["FloatSlider"]


def test_sgd_cloud_figure_full_preconditioner_reaches_the_posterior(problem):
    settings = [(1.0, 10, "none"), (1.0, 10, "full"), (64.0, 10, "none")]
    fig = viz.sgd_cloud_figure(problem.A, problem.C, n_data=300, settings=settings)
    titles = [ax.get_title() for ax in fig.axes]
    kl_none = float(titles[0].split("KL = ")[1])
    kl_full = float(titles[1].split("KL = ")[1])
    # plain SGD's cloud is isotropic, the posterior is not (KL 0.59 here); the full H* matches
    # the posterior up to the O(eps) discretisation; 64 eps* leaves the stable region
    assert kl_none > 0.1 and kl_full < 0.01
    assert "unstable" in titles[2] and len(fig.axes[2].lines) == 1  # the posterior only
    with pytest.raises(ValueError, match="preconditioner"):
        viz.sgd_cloud_figure(problem.A, problem.C, n_data=300, settings=[(1.0, 10, "adam")])


def test_sgd_cloud_figure_kl_matches_the_theory(problem):
    eps = sgd_bayes.optimal_learning_rate(problem.C, batch_size=10, n_data=300)
    cov = sgd_bayes.stationary_covariance(
        problem.A, problem.C, eps=eps, batch_size=10, discrete=True
    )
    zero = torch.zeros(2, dtype=F64)
    kl = float(sgd_bayes.gaussian_kl(zero, cov, zero, problem.posterior))
    fig = viz.sgd_cloud_figure(problem.A, problem.C, n_data=300, settings=[(1.0, 10, "none")])
    assert fig.axes[0].get_title().endswith(f"KL = {kl:.3f}")


def test_sgd_cloud_explorer_builds(problem):
    widget = viz.sgd_cloud_explorer(problem.A, problem.C, n_data=300)
    assert isinstance(widget, ipywidgets.interactive)
    kinds = [type(c).__name__ for c in widget.children[:-1]]
    assert kinds == ["FloatSlider", "IntSlider", "Dropdown"]
