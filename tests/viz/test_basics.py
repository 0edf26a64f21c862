"""blrlib.viz.basics: each figure draws what it says, checked through its artists."""

from __future__ import annotations

import math
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch

from blrlib import viz

F64 = torch.float64


def test_gaussian_pdf_is_the_normal_density():
    grid = torch.linspace(-3.0, 4.0, 50)
    ref = torch.distributions.Normal(0.3, math.sqrt(0.7)).log_prob(grid).exp()
    torch.testing.assert_close(viz.gaussian_pdf(grid, 0.3, 0.7), ref)


def test_plot_ellipse_lies_on_the_mahalanobis_circle():
    mean, cov = torch.tensor([1.0, -1.0]), torch.tensor([[2.0, 0.6], [0.6, 1.0]])
    _, ax = plt.subplots()
    (line,) = viz.plot_ellipse(ax, mean, cov, radius=2.0)
    pts = torch.tensor(np.stack([line.get_xdata(), line.get_ydata()], -1)) - mean
    dist2 = (pts @ torch.linalg.inv(cov) * pts).sum(-1)
    torch.testing.assert_close(dist2, torch.full_like(dist2, 4.0))


def test_plot_trace_draws_a_density_and_a_trace_per_variable():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

        idata = arviz.from_dict(posterior={"x": np.random.default_rng(0).normal(size=(2, 50))})
        axes = viz.plot_trace(idata)
    assert np.asarray(axes).shape == (1, 2)
