"""blrlib.viz.conjugate_em: each figure draws what it says, checked through its artists."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.collections import PathCollection

from blrlib import viz
from tests.viz._widgets import widget_names

F64 = torch.float64


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


def test_em_explorer_has_a_slider_over_the_iterations():
    y, moments = torch.randn(10, 2), [(torch.ones(1), torch.zeros(1, 2), torch.eye(2)[None])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Agg cannot show a figure
        em = viz.em_explorer(y, moments * 3, [-1.0, -0.9, -0.8])
    assert widget_names(em) == {"iteration"} and em.children[0].max == 2
