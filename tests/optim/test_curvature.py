"""Eq 45's squared per-example gradients: nn.Linear's from one backward pass (an outer
product per example) equal torch.func's vmap to rounding, in float64."""

from __future__ import annotations

import torch
from torch import nn
from torch.testing import assert_close

from blrlib.optim import _curvature


class Scale(nn.Module):
    """A parametrised layer that is not nn.Linear: x * w, elementwise."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.linspace(0.5, 1.5, dim))

    def forward(self, x):
        return x * self.w


def _ce(f, y):
    return nn.functional.cross_entropy(f, y, reduction="none")


def test_linear_layers_from_one_backward_equal_vmap(monkeypatch):
    """Linear (with and without bias, one followed by an in-place ReLU), LayerNorm and a custom
    layer: loss, mean gradient and
    mean squared per-example gradient agree with the all-vmap reference to 1e-10 (float64:
    the two sum the same products in another order). Only the non-Linear parameters may go
    through vmap (recorded), so the Linear path is the one under test."""
    model = nn.Sequential(
        nn.Linear(5, 8), nn.ReLU(inplace=True), nn.LayerNorm(8), Scale(8), nn.Tanh(),
        nn.Linear(8, 6, bias=False), nn.Tanh(), nn.Linear(6, 3),
    ).double()  # fmt: skip
    x, y = torch.randn(33, 5), torch.randint(0, 3, (33,))
    params = list(model.parameters())
    through_vmap = []
    vmapped = _curvature._squared_per_example

    def record(model_, loss_fn, ps, *args):
        through_vmap.extend(ps)
        return vmapped(model_, loss_fn, ps, *args)

    monkeypatch.setattr(_curvature, "_squared_per_example", record)
    loss, grads, gn = _curvature.gauss_newton(model, _ce, params, x, y)
    ref_loss, ref_grads, ref_gn = _curvature.gauss_newton_vmap(model, _ce, params, x, y)
    not_linear = [model[2].weight, model[2].bias, model[3].w]
    assert {id(p) for p in through_vmap} == {id(p) for p in not_linear}
    assert_close(loss, ref_loss, rtol=1e-10, atol=0)
    for a, b in zip(grads + gn, ref_grads + ref_gn, strict=True):
        assert a.shape == b.shape
        assert_close(a, b, rtol=1e-10, atol=1e-14)  # atol: entries that are 0 up to rounding


def test_a_linear_layer_called_twice_or_on_sequences_takes_the_vmap_path():
    """Per-example gradients that are sums of outer products (a layer used twice, or applied
    to each step of a sequence) are not one outer product: those go to vmap, and agree."""
    shared = nn.Linear(4, 4).double()
    seq = nn.Linear(4, 3).double()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.shared, self.seq = shared, seq

        def forward(self, x):  # x: (M, 2, 4)
            return self.seq(torch.tanh(self.shared(torch.tanh(self.shared(x))))).sum(1)

    model = Net()
    x, y = torch.randn(9, 2, 4), torch.randint(0, 3, (9,))
    params = list(model.parameters())
    _, grads, gn = _curvature.gauss_newton(model, _ce, params, x, y)
    _, ref_grads, ref_gn = _curvature.gauss_newton_vmap(model, _ce, params, x, y)
    for a, b in zip(grads + gn, ref_grads + ref_gn, strict=True):
        assert_close(a, b, rtol=1e-10, atol=1e-14)
