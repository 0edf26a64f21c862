"""Learning pi1 with ``dropout=ConcreteDropout(...)`` (blrlib/optim/_concrete.py, end of Sec 4.3).

* The relaxed masks: P(z~ > 1/2) = pi1 at every temperature (5 standard errors of 2e5 draws);
  as tau -> 0 they become hard 0/1 masks.
* The step of logit pi1 is lam <- lam - rho (grad_mu F + lam) with F = N loss(z~(lam) * theta) +
  pi1 delta / 2 ||m||^2 and mu = J pi1: checked against central finite differences of F at the
  optimizer's own draw (float64, step 1e-6: truncation ~1e-12, rounding ~1e-10 relative).
* A group without it keeps fixed-pi1 dropout, and learning moves pi1 in the expected direction.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from blrlib import optim
from blrlib.optim._concrete import relaxed_masks
from tests.optim._models import per_example_ce

N, DELTA = 24, 2.0


@pytest.mark.parametrize("tau", [1e-3, 0.1, 1.0, 10.0])
@pytest.mark.parametrize("pi1", [0.2, 0.9])
def test_share_above_one_half_is_pi1(pi1, tau):
    n = 200_000
    gen = torch.Generator().manual_seed(0)
    z = relaxed_masks(math.log(pi1 / (1 - pi1)), n, tau, generator=gen)
    share = (z > 0.5).double().mean()
    assert abs(float(share) - pi1) < 5 * math.sqrt(pi1 * (1 - pi1) / n)


def test_masks_become_hard_as_the_temperature_falls():
    """E[min(z~, 1 - z~)] = E[sigmoid(-|lam + L| / tau)] = O(tau); the same u gives the same
    hard mask (z~ > 1/2) at every tau."""
    logit, dist, hard = math.log(0.7 / 0.3), [], None
    for tau in (1.0, 0.1, 0.01, 0.001):
        z = relaxed_masks(logit, 50_000, tau, generator=torch.Generator().manual_seed(1))
        dist.append(float(torch.minimum(z, 1 - z).mean()))
        hard = z > 0.5 if hard is None else hard
        assert torch.equal(z > 0.5, hard)
    assert all(
        a > 5 * b for a, b in zip(dist, dist[1:], strict=False)
    )  # about 10x per decade of tau
    assert dist[-1] < 1e-3


def _tiny(setting, seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 3))
    groups = [{"params": [*net[0].parameters(), net[2].bias]},
              {"params": [net[2].weight], "dropout": setting}]  # fmt: skip
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(N, 2, generator=g), torch.randint(0, 3, (N,), generator=g)
    return net, groups, x, y


@pytest.mark.parametrize("cls", [optim.AdamLike, optim.VON])
def test_logit_step_is_the_blr_step_with_the_finite_difference_gradient(cls):
    setting = optim.ConcreteDropout(0.7, temperature=0.5, lr=0.3)
    net, groups, x, y = _tiny(setting)
    opt = cls(
        groups, n_data=N, lr=0.01, prior_prec=DELTA, generator=torch.Generator().manual_seed(5)
    )
    w = net[2].weight
    for _ in range(3):  # a few steps first, so that m, h and pi1 are not at their start
        opt.zero_grad()
        with opt.sampled_params(train=True):
            per_example_ce(net(x), y).mean().backward()
            w_tilde = w.detach().clone()  # z~ * theta
            inner = {k: v.detach().clone() for k, v in net.state_dict().items()}
        group = opt.param_groups[1]
        lam, pi1, z = group["dropout_logit"], group["dropout"], opt._masks[w]
        m = w.detach().clone()
        opt.step()
    theta = w_tilde / z  # the draw before the mask (m itself for AdamLike)
    noise = setting.temperature * torch.logit(z) - lam  # L, the draw's logistic noise

    @torch.no_grad()
    def objective(logit: float) -> float:  # F(logit) = N loss(z~ theta) + pi1 delta/2 ||m||^2
        zl = torch.sigmoid((logit + noise) / setting.temperature)
        net.load_state_dict({**inner, "2.weight": zl * theta})
        loss = per_example_ce(net(x), y).mean()
        return float(N * loss + torch.sigmoid(torch.tensor(logit)) * DELTA / 2 * (m * m).sum())

    h = 1e-6
    d_logit = (objective(lam + h) - objective(lam - h)) / (2 * h)
    grad_mu = d_logit / (pi1 * (1 - pi1)) / w.shape[1]  # mu = J pi1
    expected = lam - setting.lr * (grad_mu + lam)
    assert_close(opt.param_groups[1]["dropout_logit"], expected, rtol=1e-7, atol=0)
    assert_close(opt.param_groups[1]["dropout"], 1 / (1 + math.exp(-expected)), rtol=1e-7, atol=0)
    assert opt.param_groups[0]["learn_dropout"] is None and opt.param_groups[0]["dropout"] == 1.0


def test_fixed_pi1_and_prediction_use_hard_masks():
    """Only training draws are relaxed: prediction masks are 0/1 at the learned pi1."""
    net, groups, x, y = _tiny(optim.ConcreteDropout(0.6))
    opt = optim.AdamLike(groups, n_data=N, lr=0.01, generator=torch.Generator().manual_seed(2))
    m = net[2].weight.detach().clone()
    with opt.sampled_params(train=False, noise=False):
        w = net[2].weight.detach().clone()
    kept = (w == m).all(0)
    assert torch.equal(kept, ~(w == 0).all(0)) and kept.any() and not kept.all()
    opt2 = optim.AdamLike(_tiny(0.6)[1], n_data=N, lr=0.01)
    assert opt2.param_groups[1]["learn_dropout"] is None


def test_pi1_falls_with_little_data_and_rises_with_much():
    """Few examples: the entropy and prior terms dominate and pi1 drops from 0.9; with the same
    examples counted N = 1e4 times (n_data), the data term dominates and pi1 rises."""
    final = {}
    for n_data in (4, 10_000):
        net, groups, x, y = _tiny(optim.ConcreteDropout(0.9, lr=0.05))
        opt = optim.AdamLike(
            groups, n_data=n_data, lr=0.02, generator=torch.Generator().manual_seed(0)
        )
        for _ in range(300):
            opt.zero_grad()
            with opt.sampled_params(train=True):
                per_example_ce(net(x), y).mean().backward()
            opt.step()
        final[n_data] = opt.param_groups[1]["dropout"]
    assert final[4] < 0.8 < 0.9 < final[10_000]


BAD = [
    ({"temperature": 0.0}, ValueError, "temperature"),
    ({"temperature": -1.0}, ValueError, "temperature"),
    ({"temperature": math.nan}, ValueError, "temperature"),
    ({"temperature": "0.1"}, TypeError, "temperature"),
    ({"lr": 0.0}, ValueError, "lr"),
    ({"lr": 1.5}, ValueError, "lr"),
    ({"pi1": 1.0}, ValueError, "pi1"),
    ({"pi1": 0.0}, ValueError, "pi1"),
    ({"pi1": True}, TypeError, "pi1"),
]


@pytest.mark.parametrize(("kwargs", "error", "name"), BAD)
def test_bad_settings(kwargs, error, name):
    with pytest.raises(error, match=name):
        optim.ConcreteDropout(**kwargs)


def test_bad_temperature_of_relaxed_masks_and_bad_dropout():
    with pytest.raises(ValueError, match="temperature"):
        relaxed_masks(0.0, 3, 0.0)
    net, _, _, _ = _tiny(0.5)
    with pytest.raises(TypeError, match="dropout"):
        optim.VON(net.parameters(), n_data=N, dropout="learn")


def test_state_dict_keeps_the_learned_pi1():
    net, groups, x, y = _tiny(optim.ConcreteDropout(0.8, lr=0.1))
    opt = optim.VON(groups, n_data=N, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        opt.zero_grad()
        with opt.sampled_params(train=True):
            per_example_ce(net(x), y).mean().backward()
        opt.step()
    other = optim.VON(_tiny(optim.ConcreteDropout(0.8, lr=0.1))[1], n_data=N)
    other.load_state_dict(opt.state_dict())
    for key in ("dropout", "dropout_logit", "learn_dropout"):
        assert other.param_groups[1][key] == opt.param_groups[1][key]
    assert opt.param_groups[1]["dropout"] != 0.8
