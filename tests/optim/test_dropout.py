"""The ``dropout`` option of blrlib.optim: Eq 42-43 with a diagonal S (Sec 4.3 with Sec 4.2).

* pi1 = 1 gives bit for bit the iterates of the optimizer without the option (every class).
* Newton with dropout is Eq 42-43, diagonal, written out here with torch.func.
* AdamLike with dropout is torch's Adam on a network with ``nn.Dropout`` and the same masks,
  torch's weights being pi1 times ours (the 1/pi1 convention, see tests/test_estimators_dropout.py).
Float64, so agreement is to rounding (1e-10).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from blrlib import optim
from tests.optim._models import flat, per_example_ce, problem

N, DELTA, RHO, PI1 = 24, 2.0, 0.3, 0.6


def _make(cls, model, dropout=None, seed=1):
    kw = {} if dropout is None else {"dropout": dropout}
    gen = torch.Generator().manual_seed(seed)
    if cls in (optim.OGN, optim.VOGN, optim.Newton):
        kw.update(model=model, loss_fn=per_example_ce)
    if cls is optim.AdamLike:
        return cls(model.parameters(), n_data=N, lr=0.01, prior_prec=DELTA, generator=gen, **kw)
    return cls(model.parameters(), n_data=N, lr=RHO, prior_prec=DELTA, generator=gen, **kw)


def _train(opt, model, x, y, n_steps=4):
    for _ in range(n_steps):
        opt.zero_grad()
        with opt.sampled_params(train=True):
            if isinstance(opt, (optim.OGN, optim.Newton)):
                opt.backward(x, y)
            else:
                per_example_ce(model(x), y).mean().backward()
        opt.step()


@pytest.mark.parametrize("cls", [optim.Newton, optim.AdamLike, optim.OGN, optim.VOGN, optim.VON])
def test_pi1_one_is_the_optimizer_without_dropout(cls):
    model, x, y, _ = problem(N)
    twin, _, _, _ = problem(N)
    _train(_make(cls, model, dropout=1.0), model, x, y)
    _train(_make(cls, twin), twin, x, y)
    assert_close(flat(model), flat(twin), rtol=0, atol=0)
    other, _, _, _ = problem(N)
    _train(_make(cls, other, dropout=PI1), other, x, y)
    assert (flat(other) - flat(twin)).abs().max() > 1e-3  # the option does something


def test_newton_with_dropout_is_eq42_eq43():
    """h <- (1 - rho) h + rho z H(theta~) / pi1;  m <- m - rho (z g(theta~) / pi1 + delta/N m)
    / (h + delta/N), the mask z on the columns (input units) of the last layer only."""
    model, x, y, loss = problem(N)
    first, last_w, last_b = list(model[0].parameters()), model[2].weight, model[2].bias
    groups = [{"params": first + [last_b]}, {"params": [last_w], "dropout": PI1}]
    gen = torch.Generator().manual_seed(3)
    opt = optim.Newton(groups, n_data=N, lr=RHO, prior_prec=DELTA, hess_init=0.5, model=model,
                       loss_fn=per_example_ce, generator=gen)  # fmt: skip
    order = [*first, last_w, last_b]  # the optimizer's order; problem()'s flat order differs
    index = {id(p): i for i, p in enumerate(model.parameters())}
    m = [p.detach().clone() for p in model.parameters()]
    h = [torch.full_like(p, 0.5) for p in m]
    wd = DELTA / N
    for _ in range(5):
        opt.zero_grad()
        with opt.sampled_params(train=True):
            opt.backward(x, y)
        z = opt._masks[last_w]
        masks = [torch.ones_like(p) for p in m]
        masks[index[id(last_w)]] = z.expand_as(last_w)
        theta = torch.cat([(mi * zi).reshape(-1) for mi, zi in zip(m, masks, strict=True)])
        g = torch.func.grad(loss)(theta) / N
        hd = torch.diagonal(torch.func.hessian(loss)(theta)) / N
        sizes = [p.numel() for p in m]
        for i, (gi, hi) in enumerate(zip(g.split(sizes), hd.split(sizes), strict=True)):
            scale = masks[i] / (PI1 if i == index[id(last_w)] else 1.0)
            h[i] = (1 - RHO) * h[i] + RHO * hi.view_as(m[i]) * scale
            m[i] = m[i] - RHO * (gi.view_as(m[i]) * scale + wd * m[i]) / (h[i] + wd)
        opt.step()
        for p in order:
            assert_close(p.detach(), m[index[id(p)]], rtol=0, atol=1e-10)
    assert (z == 0).any() and (z == 1).any()


def test_adamlike_with_dropout_is_torch_adam_with_nn_dropout():
    """AdamLike(dropout=pi1) on W = torch Adam(lr pi1, weight_decay wd / pi1) on W' = pi1 W
    with nn.Dropout(1 - pi1), the same masks (one example per step, one mask per step)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(N, 3, generator=g), torch.randint(0, 3, (N,), generator=g)
    torch.manual_seed(0)
    ours = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3))
    theirs = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Dropout(1 - PI1), nn.Linear(5, 3))
    theirs.load_state_dict({"0.weight": ours[0].weight, "0.bias": ours[0].bias,
                            "3.weight": PI1 * ours[2].weight, "3.bias": ours[2].bias})  # fmt: skip
    lr, wd = 0.01, DELTA / N
    rest = [*ours[0].parameters(), ours[2].bias]
    opt = optim.AdamLike([{"params": rest}, {"params": [ours[2].weight], "dropout": PI1}],
                         n_data=N, lr=lr, prior_prec=DELTA)  # fmt: skip
    ref = torch.optim.Adam([
        {"params": [*theirs[0].parameters(), theirs[3].bias]},
        {"params": [theirs[3].weight], "lr": lr * PI1, "weight_decay": wd / PI1},
    ], lr=lr, weight_decay=wd)  # fmt: skip
    for t in range(100):
        i = slice(t % N, t % N + 1)
        opt.zero_grad()
        torch.manual_seed(t)  # the mask: bernoulli_(pi1) over the 5 hidden units, both sides
        with opt.sampled_params(train=True):
            per_example_ce(ours(x[i]), y[i]).mean().backward()
        opt.step()
        ref.zero_grad()
        torch.manual_seed(t)
        per_example_ce(theirs(x[i]), y[i]).mean().backward()
        ref.step()
    assert_close(ours[2].weight.detach(), theirs[3].weight.detach() / PI1, rtol=0, atol=1e-10)
    assert_close(ours[0].weight.detach(), theirs[0].weight.detach(), rtol=0, atol=1e-10)


@pytest.mark.parametrize(("value", "error"), [(0.0, ValueError), (1.5, ValueError),
                                              (True, TypeError), ("0.5", TypeError)])  # fmt: skip
def test_bad_dropout(value, error):
    model, _, _, _ = problem(N)
    with pytest.raises(error, match="dropout"):
        optim.VON(model.parameters(), n_data=N, dropout=value)
    with pytest.raises(error, match="dropout"):
        optim.VON([{"params": model.parameters(), "dropout": value}], n_data=N)


def test_step_needs_the_masks():
    model, x, y, _ = problem(N)
    opt = optim.AdamLike(model.parameters(), n_data=N, dropout=PI1)
    per_example_ce(model(x), y).mean().backward()
    with pytest.raises(RuntimeError, match="masks"):
        opt.step()
