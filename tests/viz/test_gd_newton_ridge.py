"""blrlib.viz.gd_newton_ridge: each figure draws what it says, checked through its artists."""

from __future__ import annotations

import ipywidgets
import torch

from blrlib import viz

F64 = torch.float64


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
