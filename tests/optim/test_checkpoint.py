"""Checkpoints and copies of every blrlib optimizer: a save, load and continue, a deepcopy
and a pickle each continue bit for bit as the uninterrupted run (``optim._checkpoint``)."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn

from blrlib import optim
from examples import ddp_train

NAMES = (*ddp_train.OPTIMIZERS, "VON-concrete")


def _setup(name: str, seed: int = 0) -> tuple[nn.Module, optim.BLROptimizer]:
    """A fresh network and optimizer; the generator's seed differs from the run's on purpose
    when ``seed`` != 0 (a load must bring the saved generator state)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    gen = torch.Generator().manual_seed(1 + seed)
    if name == "VON-concrete":  # a learned pi1: a ConcreteDropout in the groups
        groups = [{"params": net[0].parameters(), "dropout": optim.ConcreteDropout(0.8)},
                  {"params": net[2].parameters()}]  # fmt: skip
        return net, optim.VON(groups, n_data=64, lr=0.05, beta=0.01, generator=gen)
    return net, ddp_train.make_optimizer(name, net, n_data=64, generator=gen)


def _train(net: nn.Module, opt: optim.BLROptimizer, steps: int, start: int) -> None:
    x, y = ddp_train.data(dtype=torch.get_default_dtype())
    for t in range(start, start + steps):
        idx = torch.arange(16) + 16 * (t % 4)
        ddp_train.train_step(opt, net, x[idx], y[idx])


def _assert_same(a: tuple[nn.Module, optim.BLROptimizer], b) -> None:
    """Bitwise: the weights, every state tensor and number, the groups and the generator."""
    (net_a, opt_a), (net_b, opt_b) = a, b
    for p, q in zip(net_a.parameters(), net_b.parameters(), strict=True):
        assert torch.equal(p, q)
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for i, state in sa["state"].items():
        assert state.keys() == sb["state"][i].keys()
        for key, v in state.items():
            w = sb["state"][i][key]
            assert torch.equal(v, w) if torch.is_tensor(v) else v == w, key
            assert not torch.is_tensor(v) or v.dtype == w.dtype
    assert ("generator" in sa) == ("generator" in sb)
    if "generator" in sa:
        assert torch.equal(sa["generator"], sb["generator"])


@pytest.mark.parametrize("name", NAMES)
def test_save_load_continue_equals_the_uninterrupted_run(name):
    run = _setup(name)
    _train(*run, 3, 0)
    buffer = io.BytesIO()
    torch.save({"model": run[0].state_dict(), "opt": run[1].state_dict()}, buffer)
    _train(*run, 3, 3)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # tensors, numbers and strings only
    resumed = _setup(name, seed=7)
    resumed[0].load_state_dict(saved["model"])
    resumed[1].load_state_dict(saved["opt"])
    _train(*resumed, 3, 3)
    _assert_same(run, resumed)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("name", NAMES)
def test_copies_continue_exactly_as_the_original(name, how):
    run = _setup(name)
    _train(*run, 2, 0)
    if how == "deepcopy":
        twin = copy.deepcopy(run)
    else:
        twin = pickle.loads(pickle.dumps(run))
    assert run[1].generator is None or twin[1].generator is not run[1].generator
    _train(*run, 3, 2)
    _train(*twin, 3, 2)
    _assert_same(run, twin)
    if run[1].model is not None:  # OGN, VOGN, Newton differentiate the copied network
        assert twin[1].model is twin[0]


_LOW = {"VON": ("hess", "momentum"), "BayesBiNN": ("prior", "momentum")}


@pytest.mark.parametrize("name", sorted(_LOW))
def test_low_precision_weights_keep_float32_state_after_a_load(name):
    def make():
        torch.manual_seed(0)
        net = nn.Linear(4, 3).to(torch.bfloat16)
        gen = torch.Generator().manual_seed(1)
        extra = {"beta": 0.9} if name == "BayesBiNN" else {}
        return net, getattr(optim, name)(net.parameters(), n_data=64, generator=gen, **extra)

    net, opt = make()
    x = torch.randn(16, 4, dtype=torch.bfloat16)
    for _ in range(2):
        opt.zero_grad()
        with opt.sampled_params(train=True):
            net(x).float().pow(2).mean().backward()
        opt.step()
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    other_net, other = make()
    other.load_state_dict(torch.load(buffer, weights_only=True))
    for p, q in zip(net.parameters(), other_net.parameters(), strict=True):
        for key in _LOW[name]:
            assert opt.state[p][key].dtype == torch.float32
            assert other.state[q][key].dtype == torch.float32
            assert torch.equal(other.state[q][key], opt.state[p][key])


def test_a_load_gives_a_generator_to_an_optimizer_without_one():
    net, opt = _setup("VON")
    _train(net, opt, 2, 0)
    fresh = optim.VON(net.parameters(), n_data=64)  # generator=None: torch's global one
    fresh.load_state_dict(opt.state_dict())
    assert torch.equal(fresh.generator.get_state(), opt.generator.get_state())
    assert "generator" not in optim.VON(net.parameters(), n_data=64).state_dict()
