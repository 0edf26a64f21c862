"""blrlib.viz.optim: each figure draws what it says, checked through its artists."""

from __future__ import annotations

import ipywidgets
import pytest
import torch

from blrlib import viz

F64 = torch.float64


def test_precision_memory_figure_noiseless_path_is_the_closed_form():
    # Without noise h_t = (1 - beta)^t h0 + (1 - (1 - beta)^t) hess (Eq 36 unrolled); the
    # drawn path must match it to float64 rounding, for both starts.
    beta, hess, n = 0.05, 0.5, 60
    fig = viz.precision_memory_figure([beta, 0.5], hess=hess, noise=0.0, n_steps=n)
    assert len(fig.axes) == 2 and "beta = 0.05" in fig.axes[0].get_title()
    t = torch.arange(n + 1, dtype=torch.float64)
    for line, h0 in zip(fig.axes[0].lines[0:4:2], (0.1, 1.0), strict=True):
        path = torch.as_tensor(line.get_ydata(), dtype=torch.float64)
        expected = (1 - beta) ** t * h0 + (1 - (1 - beta) ** t) * hess
        torch.testing.assert_close(path, expected, rtol=1e-12, atol=1e-12)


def test_precision_memory_figure_starts_forgotten_with_a_fast_rate():
    # With noise, both starts see the same draws, so their gap is (1 - beta)^t (h0 - h0'):
    # after 800 steps at beta = 10 / 800 it is 0.9 e^-10 < 1e-4 (rounding aside).
    fig = viz.precision_memory_figure([10 / 800], noise=0.3, n_steps=800)
    a, b = (torch.as_tensor(ln.get_ydata()) for ln in fig.axes[0].lines[0:4:2])
    assert abs(float(a[-1] - b[-1])) < 1e-4 and abs(float(a[0] - b[0])) == pytest.approx(0.9)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(betas=[0.0]), "betas"),
        (dict(betas=[0.1], hess=-1.0), "hess"),
        (dict(betas=[0.1], noise=-0.1), "noise"),
        (dict(betas=[0.1], n_steps=0), "n_steps"),
    ],
)
def test_precision_memory_figure_rejects_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        viz.precision_memory_figure(**kwargs)


def test_precision_memory_explorer_builds_without_a_frontend():
    explorer = viz.precision_memory_explorer(n_steps=50)
    assert isinstance(explorer, ipywidgets.interactive)
    names = [w.description for w in explorer.children[:-1]]
    assert names == ["log10_beta", "noise"]
