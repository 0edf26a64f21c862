"""blrlib.viz.binary: each figure draws what it says, checked through its artists."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from blrlib import viz
from tests.viz._widgets import widget_names

F64 = torch.float64


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


def test_relaxation_explorer_has_its_sliders():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Agg cannot show a figure
        assert widget_names(viz.relaxation_explorer()) == {"lam", "log10_tau"}
