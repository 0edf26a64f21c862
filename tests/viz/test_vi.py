"""blrlib.viz.vi: each figure draws what it says, checked through its artists."""

from __future__ import annotations

import math

import ipywidgets
import pytest
import torch
from scipy import integrate, special
from torch.testing import assert_close

from blrlib import viz

F64 = torch.float64


def _expected_curvature(mean: float, sd: float) -> float:
    """E[sigmoid(a) (1 - sigmoid(a))] for a ~ N(mean, sd^2), by scipy's adaptive quadrature."""

    def integrand(t: float) -> float:
        dens = math.exp(-0.5 * ((t - mean) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
        return special.expit(t) * special.expit(-t) * dens

    return integrate.quad(integrand, mean - 12 * sd, mean + 12 * sd, epsabs=1e-13)[0]


def _curvature(line) -> float:
    """The second derivative of a drawn quadratic, from its points (exact up to rounding)."""
    x, y = (torch.as_tensor(v, dtype=torch.float64) for v in line.get_data())
    h = x[1] - x[0]
    return float(((y[2:] - 2 * y[1:-1] + y[:-2]) / h**2).mean())


@pytest.mark.parametrize(("mean", "sd"), [(1.0, 0.1), (1.0, 1.5), (-5.0, 2.0)])
def test_site_figure_draws_the_expected_curvature(mean, sd):
    """The dashed site has curvature 2 beta = -E_q[sigmoid'(a)] (Eq 58 by Price's theorem),
    checked against scipy's quadrature (1e-6: the second difference of the drawn points on
    a grid of step 0.04 loses about 1e-9 to rounding); the dotted Taylor expansion has
    -sigmoid'(mean)."""
    fig = viz.site_figure([(mean, sd)])
    log_factor, site, taylor = fig.axes[0].lines[:3]
    assert_close(_curvature(site), -_expected_curvature(mean, sd), rtol=0, atol=1e-6)
    s_m = special.expit(mean)
    assert_close(_curvature(taylor), -s_m * (1 - s_m), rtol=0, atol=1e-6)
    # the site is shifted to agree with the log factor at the mean (1e-2: grid spacing)
    x, y = site.get_data()
    i = int(abs(torch.as_tensor(x) - mean).argmin())
    assert abs(y[i] - log_factor.get_data()[1][i]) < 1e-2


def test_site_figure_tends_to_taylor_and_flattens_near_the_bend():
    """As sd -> 0 the site is the Taylor expansion (1e-4 at sd 0.01: the expected curvature
    differs by O(sd^2)); at the bend (mean 0) a wide q gives a flatter site, in the tail
    (mean -5) a more curved one, as the chapter says."""
    fig = viz.site_figure([(0.0, 0.01), (0.0, 2.0), (-5.0, 2.0)], label=0)
    narrow, bend, tail = fig.axes
    assert_close(_curvature(narrow.lines[1]), _curvature(narrow.lines[2]), rtol=0, atol=1e-4)
    assert abs(_curvature(bend.lines[1])) < abs(_curvature(bend.lines[2]))
    assert abs(_curvature(tail.lines[1])) > abs(_curvature(tail.lines[2]))


def test_site_figure_rejects_bad_settings():
    with pytest.raises(ValueError, match="sd"):
        viz.site_figure([(0.0, 0.0)])
    with pytest.raises(ValueError, match="label"):
        viz.site_figure([(0.0, 1.0)], label=2)


def test_site_explorer_builds_without_a_frontend():
    """The VI chapter's explorer is an ipywidgets.interactive with its three controls."""
    explorer = viz.site_explorer()
    assert isinstance(explorer, ipywidgets.interactive)
    assert {c.description for c in explorer.children[:-1]} == {"mean", "log10_sd", "label"}
