"""Checkpoints and copies of a BLR optimizer: what torch's Optimizer leaves out.

    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, path)
    ckpt = torch.load(path, weights_only=True)          # tensors, numbers and strings only
    model.load_state_dict(ckpt["model"]); opt.load_state_dict(ckpt["opt"])
    twin_model, twin_opt = copy.deepcopy((model, opt))  # or pickle.loads(pickle.dumps(...))

torch's ``Optimizer.state_dict`` holds the per-parameter state and the groups' settings; a
BLR optimizer also draws from its generator, so the generator's state is saved under
``"generator"`` (with ``generator=None`` the draws come from torch's global generator, which
belongs to the caller: save ``torch.get_rng_state()`` with the checkpoint). A group's
:class:`ConcreteDropout` is saved as a plain dict, so that ``torch.load(weights_only=True)``
reads every checkpoint. torch casts floating-point state to the parameter's dtype on load;
the float32 state of bfloat16 or float16 parameters is put back as saved.

torch's ``Optimizer.__getstate__`` keeps only the state and the groups, which is what
``copy.deepcopy`` and ``pickle`` use: :func:`getstate` keeps every attribute except the
scratch buffers (rebuilt at the next draw) and the process group (not picklable; a copy uses
the default group, if any).
"""

from __future__ import annotations

import dataclasses
from itertools import chain
from typing import Any

import torch

from blrlib.optim._concrete import ConcreteDropout

__all__ = ["getstate", "load_state_dict", "state_dict"]

LOW_PRECISION = (torch.bfloat16, torch.float16)
_HOOKS = "_optimizer_"  # torch's hook dicts: they may hold closures, torch re-creates them


def state_dict(opt: Any, saved: dict[str, Any]) -> dict[str, Any]:
    """torch's state dict ``saved`` plus the generator's state; ConcreteDropout as a dict."""
    groups = []
    for group in saved["param_groups"]:
        setting = group.get("learn_dropout")
        if isinstance(setting, ConcreteDropout):
            group = {**group, "learn_dropout": dataclasses.asdict(setting)}
        groups.append(group)
    out = {**saved, "param_groups": groups}
    if opt.generator is not None:
        out["generator"] = opt.generator.get_state()
        out["generator_device"] = str(opt.generator.device)
    return out


def load_state_dict(opt: Any, saved: dict[str, Any], load: Any) -> None:
    """Load ``saved`` with torch's ``load`` (the bound super method), then the extras."""
    saved = dict(saved)
    gen_state = saved.pop("generator", None)
    device = saved.pop("generator_device", None)
    groups = []
    for group in saved["param_groups"]:
        setting = group.get("learn_dropout")
        if isinstance(setting, dict):
            group = {**group, "learn_dropout": ConcreteDropout(**setting)}
        groups.append(group)
    saved["param_groups"] = groups
    load(saved)
    ids = chain.from_iterable(g["params"] for g in saved["param_groups"])
    params = chain.from_iterable(g["params"] for g in opt.param_groups)
    for i, p in zip(ids, params, strict=True):
        if p.dtype in LOW_PRECISION and i in saved["state"]:  # torch cast it to p's dtype
            for key, value in saved["state"][i].items():
                if torch.is_tensor(value) and value.is_floating_point() and key != "step":
                    opt.state[p][key] = value.to(device=p.device, copy=True)
    if gen_state is not None:
        if opt.generator is None:
            params = [p for g in opt.param_groups for p in g["params"]]
            opt.generator = torch.Generator(device=params[0].device if params else device)
        opt.generator.set_state(gen_state)


def getstate(opt: Any) -> dict[str, Any]:
    """Everything but the scratch buffers, the process group and torch's hooks."""
    state = {k: v for k, v in opt.__dict__.items() if not k.startswith(_HOOKS)}
    state["_scratch"] = {}
    state["process_group"] = None
    state["_draws_checked"] = False
    return state
