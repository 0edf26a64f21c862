"""The optimizer contract (STYLE.md): checked settings, sampled_params, bad input, state_dict,
parameter groups, any nn.Module, low-precision weights, predict, and the CPU/CUDA agreement."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from blrlib import optim
from tests.optim._models import per_example_ce, problem


def _von(model, **kw):
    return optim.VON(model.parameters(), n_data=100, **kw)


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        (dict(lr=0.0), "lr"),
        (dict(lr=-1.0), "lr"),
        (dict(n_data=0), "n_data"),
        (dict(prior_prec=0.0), "prior_prec"),
        (dict(beta=0.0), "beta"),
        (dict(beta=1.5), "beta"),
        (dict(gamma=1.0), "gamma"),
        (dict(gamma=-0.1), "gamma"),
        (dict(hess_init=0.0), "hess_init"),
    ],
)
def test_bad_settings_name_the_argument(kw, name):
    model = nn.Linear(2, 2)
    args = {"n_data": 100, **kw}
    with pytest.raises(ValueError, match=name):
        optim.VON(model.parameters(), **args)


def test_bad_betas_and_estimator():
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        optim.AdamLike(nn.Linear(2, 2).parameters(), n_data=10, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="hessian"):
        optim.BLROptimizer(nn.Linear(2, 2).parameters(), n_data=10, lr=0.1, beta=0.1,
                           estimator="delta", hessian="reparam")  # fmt: skip
    with pytest.raises(TypeError, match="n_data"):
        _von(nn.Linear(2, 2)).__class__(nn.Linear(2, 2).parameters(), n_data="10")


def test_sampled_params_restores_even_on_error():
    model = nn.Linear(3, 2)
    before = [p.detach().clone() for p in model.parameters()]
    opt = _von(model)
    with pytest.raises(RuntimeError, match="boom"), opt.sampled_params(train=True):
        assert not torch.equal(model.weight, before[0])  # a draw, not the mean
        raise RuntimeError("boom")
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, b)


def _state_copy(opt):
    return copy.deepcopy(opt.state_dict())


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k, v in a["state"].items():
        for name, t in v.items():
            assert_close(torch.as_tensor(t), torch.as_tensor(b["state"][k][name]), rtol=0, atol=0)


def test_bad_steps_leave_state_unchanged():
    model, x, y, _ = problem()
    opt = _von(model)
    with pytest.raises(RuntimeError, match="gradient"):
        opt.step()  # no gradients at all
    with opt.sampled_params(train=True):
        per_example_ce(model(x), y).mean().backward()
    opt.step()
    weights = [p.detach().clone() for p in model.parameters()]
    saved = _state_copy(opt)
    opt.zero_grad()
    with opt.sampled_params(train=True):
        per_example_ce(model(x), y).mean().backward()
    model[0].weight.grad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        opt.step()
    model[0].weight.grad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        opt.step()
    _assert_same_state(saved, opt.state_dict())
    for p, w in zip(model.parameters(), weights, strict=True):
        assert torch.equal(p, w)
    fresh = _von(model)  # a failed step keeps its draw for a retry; a fresh one has none
    with pytest.raises(RuntimeError, match="sampled_params"):
        fresh.step()  # gradients computed outside sampled_params
    ogn = optim.OGN(model.parameters(), n_data=24, model=model, loss_fn=per_example_ce)
    with pytest.raises(RuntimeError, match="backward"):
        ogn.step()  # gradients, but no Gauss-Newton estimate


def test_state_dict_round_trip():
    """Train 3 steps, save, train 3 more; a fresh optimizer loaded from the save does the same."""
    model, x, y, _ = problem()

    def train(opt, net, gen, n):
        for _ in range(n):
            opt.zero_grad()
            with opt.sampled_params(train=True):
                per_example_ce(net(x), y).mean().backward()
            opt.step()

    opt = optim.VON(model.parameters(), n_data=24, generator=torch.Generator().manual_seed(0))
    train(opt, model, None, 3)
    twin = copy.deepcopy(model)
    saved = copy.deepcopy(opt.state_dict())
    gen_state = opt.generator.get_state()
    train(opt, model, None, 3)
    opt2 = optim.VON(twin.parameters(), n_data=24, generator=torch.Generator())
    opt2.load_state_dict(saved)
    opt2.generator.set_state(gen_state)
    train(opt2, twin, None, 3)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert_close(p, q, rtol=0, atol=0)


def test_param_groups_use_their_own_settings():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    opt = optim.VON(
        [{"params": model[0].parameters()}, {"params": model[1].parameters(), "prior_prec": 50.0}],
        n_data=10,
    )
    assert_close(opt.precision(model[0].weight), torch.full((3, 2), 10.0 + 1.0))
    assert_close(opt.precision(model[1].weight), torch.full((1, 3), 10.0 + 50.0))


class _AnyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.conv = nn.Conv1d(4, 4, 3, padding=1)
        self.norm = nn.LayerNorm(4)
        self.bn = nn.BatchNorm1d(4)
        self.out = nn.Linear(4, 3)

    def forward(self, tokens):
        h = self.conv(self.emb(tokens).transpose(1, 2))
        h = self.bn(h).transpose(1, 2)
        return self.out(self.norm(h).mean(1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_any_module_and_low_precision(dtype):
    """Conv, norm layers and embeddings in float32 and bfloat16; state is kept in float32."""
    net = _AnyNet().to(dtype)
    tokens = torch.randint(0, 10, (16, 5))
    y = torch.randint(0, 3, (16,))
    opt = optim.VON(net.parameters(), n_data=10_000, lr=0.1)  # a tight q: the loss must fall
    before = per_example_ce(net(tokens).float(), y).mean().item()
    for _ in range(40):
        opt.zero_grad()
        with opt.sampled_params(train=True):
            loss = per_example_ce(net(tokens).float(), y).mean()
            loss.backward()
        opt.step()
    assert all(s["hess"].dtype == torch.float32 for s in opt.state.values())
    assert all(p.dtype == dtype and torch.isfinite(p).all() for p in net.parameters())
    assert per_example_ce(net(tokens).float(), y).mean().item() < 0.8 * before  # it trains
    probs = optim.predict(net, opt, tokens, n_samples=4)
    assert_close(probs.float().sum(-1), torch.ones(16, dtype=torch.float32), rtol=0, atol=2e-2)


def _trained_von(hess_init: float = 1.0, steps: int = 20):
    model, x, y, _ = problem()
    opt = optim.VON(model.parameters(), n_data=24, lr=0.05, hess_init=hess_init,
                    generator=torch.Generator().manual_seed(3))  # fmt: skip
    for _ in range(steps):
        opt.zero_grad()
        with opt.sampled_params(train=True):
            per_example_ce(model(x), y).mean().backward()
        opt.step()
    return model, x, opt


def test_predict_one_draw_is_a_forward_pass_at_m_plus_eps_over_sqrt_s():
    """n_samples=1 is softmax(f(x; m + eps / sqrt(N h + delta))), written here without
    sampled_params: eps is the generator's next N(0, I) draw over all parameters (one flat
    draw per group, in parameter order), h the optimizer's state after training."""
    model, x, opt = _trained_von()
    names = [k for k, _ in model.named_parameters()]
    params = list(model.parameters())
    m = [p.detach().clone() for p in params]
    s = [24 * opt.state[p]["hess"] + 1.0 for p in params]  # N h + delta (default delta = 1)
    state = opt.generator.get_state()
    eps = torch.randn(sum(p.numel() for p in params), generator=opt.generator)
    opt.generator.set_state(state)
    parts = eps.split([p.numel() for p in params])
    theta = [mi + e.view_as(mi) / si.sqrt() for mi, e, si in zip(m, parts, s, strict=True)]
    weights = dict(zip(names, theta, strict=True))
    manual = torch.softmax(torch.func.functional_call(model, weights, (x,)), -1)
    assert_close(optim.predict(model, opt, x, n_samples=1), manual, rtol=0, atol=1e-12)
    assert all(torch.equal(p, mi) for p, mi in zip(params, m, strict=True))  # restored


def test_predict_tends_to_the_mean_prediction_as_the_precision_grows():
    """The draws' spread is 1 / sqrt(N h + delta), so the averaged probabilities approach
    softmax(f(x; m)) (n_samples=0) at that rate: 100 times closer for 10^4 times the
    precision. A predictive that ignored the precision would stay put."""
    gaps = []
    for hess_init in (1e2, 1e6):
        model, x, opt = _trained_von(hess_init=hess_init, steps=0)
        mean = optim.predict(model, opt, x, n_samples=0)
        assert_close(mean, torch.softmax(model(x), -1), rtol=0, atol=0)
        gaps.append((optim.predict(model, opt, x, n_samples=8) - mean).abs().max().item())
    assert 1e-4 < gaps[0] < 0.1 and gaps[1] < gaps[0] / 30
    model, x, opt = _trained_von()
    with pytest.raises(ValueError, match="n_samples"):
        optim.predict(model, opt, x, n_samples=-1)


def test_adamlike_refuses_to_sample_its_scaling():
    """AdamLike's sqrt(v) + eps is a step size, not a precision: predict names n_samples."""
    model, x, y, _ = problem()
    opt = optim.AdamLike(model.parameters(), n_data=24)
    opt.zero_grad()
    per_example_ce(model(x), y).mean().backward()
    opt.step()
    with pytest.raises(ValueError, match="n_samples: AdamLike has no posterior"):
        optim.predict(model, opt, x, n_samples=4)
    assert_close(optim.predict(model, opt, x, n_samples=0), torch.softmax(model(x), -1))
    dropped = optim.AdamLike(model.parameters(), n_data=24, dropout=0.5,
                             generator=torch.Generator().manual_seed(0))  # fmt: skip
    probs = optim.predict(model, dropped, x, n_samples=4, noise=False)  # masks alone
    assert_close(probs.sum(-1), torch.ones(24))
    assert not torch.allclose(probs, torch.softmax(model(x), -1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_cpu_and_cuda_agree():
    """Same weights, gradients and draws on both devices give the same step (float64)."""
    model, x, y, _ = problem()
    gpu = copy.deepcopy(model).cuda()
    opts = [optim.Newton(m.parameters(), n_data=24, model=m, loss_fn=per_example_ce)
            for m in (model, gpu)]  # fmt: skip
    for _ in range(3):
        for opt, dev in ((opts[0], "cpu"), (opts[1], "cuda")):
            opt.zero_grad()
            opt.backward(x.to(dev), y.to(dev))
            opt.step()
    for p, q in zip(model.parameters(), gpu.parameters(), strict=True):
        assert_close(p, q.cpu(), rtol=1e-9, atol=1e-12)
