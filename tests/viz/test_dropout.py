"""blrlib.viz.dropout: each figure draws what it says, checked through its artists."""

from __future__ import annotations

import warnings

import torch

from blrlib import viz
from tests.viz._widgets import widget_names

F64 = torch.float64


def test_spike_slab_figure_draws_q_and_a_responsibility_in_0_1():
    fig = viz.spike_slab_figure(0.8, 100.0, 1.0)
    q_line, r_line = fig.axes[0].get_lines()
    r = r_line.get_ydata()
    assert ((r >= 0) & (r <= 1)).all() and q_line.get_ydata().max() > 0
    assert fig.axes[0].get_title().startswith("pi1 = 0.80")


def test_spike_slab_explorer_has_its_sliders():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Agg cannot show a figure
        assert widget_names(viz.spike_slab_explorer()) == {"pi1", "log10_s0", "m"}
