"""blrlib.viz.sgd_bayes: each figure draws what it says, checked through its artists."""

from __future__ import annotations

import ipywidgets
import pytest
import torch

from blrlib import sgd_bayes, viz
from blrlib.experiments import sgd

F64 = torch.float64


@pytest.fixture
def problem():
    return sgd.regression(300, 2, seed=0, device=torch.device("cpu"))


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
