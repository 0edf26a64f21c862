"""blrlib.viz is tested on matplotlib's non-interactive Agg backend, closing every figure.

Each figure is checked through its artists (lines, collections, titles, slider names), and where
a drawn quantity has an independent reference (a density, an ellipse, a share of draws) against
that reference.
"""

from __future__ import annotations

import matplotlib
import pytest

matplotlib.use("Agg", force=True)

import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")
