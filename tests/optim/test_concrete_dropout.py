"""Learning pi1 with ``dropout=ConcreteDropout(...)`` (blrlib/optim/_concrete.py, end of Sec 4.3).

* The masks: Bernoulli(pi1) except ``probes`` units per weight tensor, at u ~ U(0, 1).
* The probe's gradient is unbiased for d E_z[loss] / d pi1 / J: the mean of 2000 one-step
  estimates, read back from lam_new = -(N g + c) at rho = 1, matches the derivative computed by
  enumerating all 2^J masks (5 standard errors).
* The prior term c: delta / (2 J) (||m||^2 + tr S^-1) with a sampling estimator (VON), without
  tr S^-1 with the delta method (AdamLike): checked exactly with a loss whose gradient is 0.
* Learning is stable: from two starts, pi1 settles at the same interior value, and it rises
  with the amount of data; a pi1 that reaches 1.0 keeps learning.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from blrlib import optim
from tests.optim._models import per_example_ce

N, DELTA, J = 8, 5.0, 4


def _tiny(setting, seed=0, n=N):
    """A 2-J-3 network; the last layer's columns (J units) are dropped, its group set."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(2, J), nn.Tanh(), nn.Linear(J, 3)).double()
    groups = [{"params": [*net[0].parameters(), net[2].bias]},
              {"params": [net[2].weight], "dropout": setting}]  # fmt: skip
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return net, groups, x, torch.randint(0, 3, (n,), generator=g)


def _step(opt, net, x, y, scale=1.0):
    opt.zero_grad()
    with opt.sampled_params(train=True):
        (scale * per_example_ce(net(x), y)).mean().backward()
    opt.step()


def test_probe_masks():
    setting = optim.ConcreteDropout(0.7, probes=2)
    net, groups, x, y = _tiny(setting)
    opt = optim.AdamLike(groups, n_data=N, generator=torch.Generator().manual_seed(0))
    kept, hard = 0, 0
    for _ in range(200):
        opt.zero_grad()
        with opt.sampled_params(train=True):
            z = opt._masks[net[2].weight].flatten()
            per_example_ce(net(x), y).mean().backward()
        inner = (z > 0) & (z < 1)
        assert int(inner.sum()) == 2  # the probes, almost surely strictly inside (0, 1)
        kept, hard = kept + int((z[~inner] == 1).sum()), hard + int((~inner).sum())
    share = kept / hard  # the non-probe masks are Bernoulli(0.7): 5 standard errors
    assert abs(share - 0.7) < 5 * math.sqrt(0.21 / hard)


def _exact_derivative(net, x, y):
    """(1 / J) d E_z[loss] / d pi1 at pi1 = 0.7, E_z over all 2^J masks of the last layer."""
    w = net[2].weight.detach().clone()
    total = 0.0
    with torch.no_grad():
        for bits in itertools.product((0.0, 1.0), repeat=J):
            z = torch.tensor(bits, dtype=torch.float64)
            k = int(z.sum())
            # d/dpi1 of pi1^k (1 - pi1)^(J - k)
            dp = k * 0.7 ** (k - 1) * 0.3 ** (J - k) - (J - k) * 0.7**k * 0.3 ** (J - k - 1)
            net[2].weight.copy_(w * z)
            total += dp * float(per_example_ce(net(x), y).mean())
        net[2].weight.copy_(w)
    return total / J


def test_probe_gradient_is_unbiased():
    """At rho = 1 the step returns lam = -(N g + c): g is read back and averaged over draws.

    The means do not move (Adam's rate 1e-12), so every draw sees the same network."""
    net, groups, x, y = _tiny(optim.ConcreteDropout(0.7, lr=1.0))
    gen = torch.Generator().manual_seed(1)
    opt = optim.AdamLike(groups, n_data=N, lr=1e-12, prior_prec=DELTA, generator=gen)
    w = net[2].weight
    c = DELTA * float((w.detach() ** 2).sum()) / (2 * J)  # delta method: no tr S^-1
    draws = []
    for _ in range(2000):
        opt.param_groups[1].update(dropout=0.7, dropout_logit=math.log(0.7 / 0.3))
        _step(opt, net, x, y)
        draws.append(-(opt.param_groups[1]["dropout_logit"] + c) / N)
    est = torch.tensor(draws)
    se = float(est.std() / math.sqrt(len(draws)))
    exact = _exact_derivative(net, x, y)
    assert abs(float(est.mean()) - exact) < 5 * se
    assert abs(exact) > 10 * se  # the derivative is resolved: the check is not vacuous


@pytest.mark.parametrize("cls", [optim.AdamLike, optim.VON])
def test_prior_term_of_the_step(cls):
    """With a zero gradient (the loss scaled by 0), lam <- (1 - rho) lam - rho c exactly."""
    net, groups, x, y = _tiny(optim.ConcreteDropout(0.8, lr=0.3))
    opt = cls(groups, n_data=N, prior_prec=DELTA, generator=torch.Generator().manual_seed(2))
    w = net[2].weight
    lam = opt.param_groups[1]["dropout_logit"]
    trace = float(opt.precision(w).reciprocal().sum()) if cls is optim.VON else 0.0
    c = DELTA * (float((w.detach() ** 2).sum()) + trace) / (2 * J)
    _step(opt, net, x, y, scale=0.0)
    expected = 0.7 * lam - 0.3 * c
    assert_close(opt.param_groups[1]["dropout_logit"], expected, rtol=1e-12, atol=0)
    assert_close(opt.param_groups[1]["dropout"], 1 / (1 + math.exp(-expected)), rtol=1e-12, atol=0)
    assert opt.param_groups[0]["learn_dropout"] is None and opt.param_groups[0]["dropout"] == 1.0


def _learn(start, n_data, n_steps=300, lr=0.05, seed=0):
    net, groups, x, y = _tiny(optim.ConcreteDropout(start, lr=lr), seed=seed)
    opt = optim.AdamLike(groups, n_data=n_data, lr=0.02, generator=torch.Generator().manual_seed(0))
    logits = []
    for _ in range(n_steps):
        _step(opt, net, x, y)
        logits.append(opt.param_groups[1]["dropout_logit"])
    return torch.tensor(logits[n_steps // 2 :])


def test_learning_is_stable_and_rises_with_data():
    """From pi1 = 0.3 and 0.95 the second-half mean logits agree (within 0.5, their spread
    being about 0.2), stay interior, and move up when the same examples count 100 times more."""
    a, b = _learn(0.3, N), _learn(0.95, N)
    assert abs(float(a.mean() - b.mean())) < 0.5 and float(a.std()) < 0.5
    assert -5 < float(a.mean()) < 5
    more = _learn(0.3, 100 * N)
    assert float(more.mean()) > float(a.mean()) + 2


def test_pi1_at_one_keeps_learning():
    """A logit beyond ~37 gives pi1 = 1.0 in float64; masks are still drawn and lam moves."""
    net, groups, x, y = _tiny(optim.ConcreteDropout(0.8, lr=0.5))
    opt = optim.AdamLike(groups, n_data=N, prior_prec=DELTA)
    opt.param_groups[1].update(dropout_logit=50.0, dropout=1.0)
    _step(opt, net, x, y, scale=0.0)
    assert opt.param_groups[1]["dropout_logit"] < 25.0


def test_fixed_pi1_and_prediction_use_hard_masks():
    """Only training draws have probes: prediction masks are 0/1 at the learned pi1."""
    net, groups, x, y = _tiny(optim.ConcreteDropout(0.6))
    opt = optim.AdamLike(groups, n_data=N, lr=0.01, generator=torch.Generator().manual_seed(2))
    m = net[2].weight.detach().clone()
    seen = torch.zeros(J, dtype=torch.bool)
    for _ in range(20):
        with opt.sampled_params(train=False, noise=False):
            w = net[2].weight.detach().clone()
        kept = (w == m).all(0)
        assert torch.equal(kept, ~(w == 0).all(0))
        seen |= kept
    assert seen.any() and not torch.equal(kept, torch.ones_like(kept))
    opt2 = optim.AdamLike(_tiny(0.6)[1], n_data=N, lr=0.01)
    assert opt2.param_groups[1]["learn_dropout"] is None


BAD = [
    ({"lr": 0.0}, ValueError, "lr"),
    ({"lr": 1.5}, ValueError, "lr"),
    ({"lr": math.nan}, ValueError, "lr"),
    ({"lr": "0.1"}, TypeError, "lr"),
    ({"probes": 0}, ValueError, "probes"),
    ({"probes": 1.0}, TypeError, "probes"),
    ({"pi1": 1.0}, ValueError, "pi1"),
    ({"pi1": 0.0}, ValueError, "pi1"),
    ({"pi1": True}, TypeError, "pi1"),
]


@pytest.mark.parametrize(("kwargs", "error", "name"), BAD)
def test_bad_settings(kwargs, error, name):
    with pytest.raises(error, match=name):
        optim.ConcreteDropout(**kwargs)


def test_bad_dropout():
    net, _, _, _ = _tiny(0.5)
    with pytest.raises(TypeError, match="dropout"):
        optim.VON(net.parameters(), n_data=N, dropout="learn")


def test_state_dict_keeps_the_learned_pi1():
    net, groups, x, y = _tiny(optim.ConcreteDropout(0.8, lr=0.1))
    opt = optim.VON(groups, n_data=N, generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        _step(opt, net, x, y)
    other = optim.VON(_tiny(optim.ConcreteDropout(0.8, lr=0.1))[1], n_data=N)
    other.load_state_dict(opt.state_dict())
    for key in ("dropout", "dropout_logit", "learn_dropout"):
        assert other.param_groups[1][key] == opt.param_groups[1][key]
    assert opt.param_groups[1]["dropout"] != 0.8
