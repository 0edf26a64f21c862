"""VON's training draws: random signs are +-1 bits, and both schemes' Hessian estimate has the
Hessian diagonal as its mean on a quadratic (the proof is in blrlib/optim/_draws.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from blrlib import optim
from blrlib.optim._draws import rademacher_


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rademacher_draws_are_fair_independent_signs(dtype):
    """64k signs: every entry is +-1; the share of +1 at each of the word's bit positions and
    the lag-1 product are within 4 standard errors of 1/2 and 0 (a stuck or repeated bit would
    sit far outside: the se of a share over 1000 words is 0.016)."""
    x = rademacher_(torch.empty(64_000, dtype=dtype), generator=torch.Generator().manual_seed(0))
    assert bool((x.abs() == 1).all())
    share = (x > 0).to(dtype).view(-1, 64).mean(0)  # one share per bit position
    assert_close(share, torch.full_like(share, 0.5), rtol=0, atol=4 * 0.5 / 1000**0.5)
    lag = (x[1:] * x[:-1]).mean()
    assert abs(float(lag)) < 4 / 64_000**0.5
    odd = rademacher_(torch.empty(7, dtype=dtype), generator=torch.Generator().manual_seed(0))
    assert bool((odd.abs() == 1).all())  # the bernoulli fallback for a size not in words


def _quadratic_step(draws: str, k: int = 20_000):
    """One VON step with beta = 1 on k independent copies of a 4-d quadratic loss: each copy's
    new h is its own estimate h_hat (h <- h + 1 (h_hat - h)); returns (h_hats, diag H)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 4, generator=g)
    hess = a @ a.T + 0.5 * torch.eye(4)  # off-diagonal terms enter h_hat's variance only
    b = torch.randn(4, generator=g)
    w = nn.Parameter(torch.randn(4, generator=g).expand(k, 4).clone())  # mean m, k copies
    opt = optim.VON([w], n_data=10.0, lr=1e-9, beta=1.0, gamma=0.0, hess_init=0.7,
                    prior_prec=2.0, positive=False, draws=draws, generator=g)  # fmt: skip
    m = w.detach().clone()
    with opt.sampled_params(train=True):
        dev = (w.detach() - m).abs()  # |theta - m|
        (0.5 * torch.einsum("ki,ij,kj->k", w, hess, w) + w @ b).sum().backward()
    opt.step()
    h_hat = (opt.precision(w) - 2.0) / 10.0  # s = N h + delta
    return h_hat, torch.diagonal(hess), dev


@pytest.mark.parametrize("draws", ["gaussian", "rademacher"])
def test_hessian_estimate_has_the_hessian_diagonal_as_its_mean_on_a_quadratic(draws):
    """E[h_hat] = diag H for both schemes: the mean of 20k independent estimates is within 4
    of its standard errors (sample sd / sqrt(k)) of diag H, coordinate by coordinate (a
    two-sided 4-se band fails by chance with probability 6e-5 per coordinate)."""
    h_hat, diag, _ = _quadratic_step(draws)
    se = h_hat.std(0) / h_hat.shape[0] ** 0.5
    assert bool((se > 0).all()) and bool((se < 0.05 * diag).all())  # informative: se small
    assert bool(((h_hat.mean(0) - diag).abs() < 4 * se).all()), (h_hat.mean(0), diag, se)


def test_rademacher_draw_moves_every_weight_by_one_standard_deviation():
    """theta - m = +-1 / sqrt(s) exactly; s = N h_0 + delta = 10 * 0.7 + 2 = 9, so +-1/3."""
    _, _, dev = _quadratic_step("rademacher", k=64)
    assert_close(dev, torch.full_like(dev, 1 / 3), rtol=1e-12, atol=0)  # float64 rounding


def test_bad_draws_name_the_argument():
    w = nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="draws"):
        optim.VON([w], n_data=1.0, draws="uniform")
