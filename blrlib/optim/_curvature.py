"""Per-example gradients (Eq 45) and exact Hessian diagonals (Eq 36-37) of a network by torch.func.

    loss, grads, gn = gauss_newton(model, per_example_loss, params, x, y)
    # grads: mean_i grad ell_i;  gn: mean_i (grad ell_i)^2, one tensor per parameter

Both work on any ``nn.Module`` whose forward treats examples independently (no BatchNorm in
training mode: use eval mode or GroupNorm/LayerNorm there); the Hessian diagonal costs one
Hessian of all parameters and is meant for the small models of the tests and the book.

For an ``nn.Linear`` layer called once on inputs of shape (M, d_in), example i's gradient is
an outer product, grad_W ell_i = g_i a_i^T (a_i the layer's input, g_i the gradient of ell_i
with respect to its output), so that sum_i (grad_W ell_i)^2 = (G * G)^T (A * A) and
sum_i (grad_b ell_i)^2 = sum_i g_i * g_i: one ordinary backward pass of sum_i ell_i gives them,
with forward hooks that keep A and G. ``gauss_newton`` takes that path for such layers and
``torch.func.vmap`` for every other parameter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, hessian, vmap

Loss = Callable[[Tensor, Tensor], Tensor]


def _split(model: nn.Module, params: list[Tensor]) -> tuple[list[str], dict[str, Tensor]]:
    ids = {id(p) for p in params}
    names = [n for n, p in model.named_parameters() if id(p) in ids]
    if len(names) != len(params):
        raise ValueError("model: the optimizer's parameters must all belong to the model")
    order = {id(p): i for i, p in enumerate(params)}
    names.sort(key=lambda n: order[id(model.get_parameter(n))])
    rest = {n: p.detach() for n, p in model.named_parameters() if id(p) not in ids}
    rest.update(dict(model.named_buffers()))
    return names, rest


def _call(model: nn.Module, names: list[str], theta, rest: dict[str, Tensor], x: Tensor) -> Tensor:
    return functional_call(model, {**dict(zip(names, theta, strict=True)), **rest}, (x,))


def gauss_newton(
    model: nn.Module, loss_fn: Loss, params: list[Tensor], x: Tensor, y: Tensor
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Mean loss, mean gradient and mean squared per-example gradient (Eq 45 / N).

    ``nn.Linear`` layers (exactly that class, called once, on inputs of shape (M, d_in)) get
    their squared per-example gradients from one backward pass (module docstring); the other
    parameters from ``torch.func.vmap`` over the examples.

    Args:
        model: the network; params: its parameters to differentiate.
        loss_fn: (outputs, targets) -> per-example losses (M,).
        x, y: the batch.

    Returns:
        (loss, grads, gn), ``grads`` and ``gn`` one tensor per parameter.

    Raises:
        ValueError: a parameter not in ``model``, or losses not of shape (M,).
    """
    _split(model, params)  # checks that every parameter belongs to the model
    layers = _linear_layers(model, params)
    inputs: dict[nn.Module, Tensor] = {}
    out_grads: dict[nn.Module, Tensor] = {}
    calls: Counter[nn.Module] = Counter()

    def keep(module: nn.Module, args: tuple[Any, ...], out: Tensor) -> None:
        calls[module] += 1
        inputs[module] = args[0].detach()
        if out.requires_grad:
            out.register_hook(lambda g: out_grads.__setitem__(module, g.detach()))

    handles = [m.register_forward_hook(keep) for m in layers]
    try:
        with torch.enable_grad():
            losses = loss_fn(model(x), y)
            if losses.shape != (x.shape[0],):
                raise ValueError(f"loss_fn must return per-example losses of shape "
                                 f"({x.shape[0]},); got {tuple(losses.shape)}")  # fmt: skip
            sums = torch.autograd.grad(losses.sum(), params, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    m = x.shape[0]
    grads = [torch.zeros_like(p) if s is None else s / m for s, p in zip(sums, params, strict=True)]
    gn: list[Tensor | None] = [None] * len(params)
    for module, (w, b) in layers.items():
        a, g = inputs.get(module), out_grads.get(module)
        if calls[module] != 1 or a is None or g is None or a.dim() != 2 or g.dim() != 2:
            continue  # called twice, or on (M, ..., d_in): the vmap path below
        g2 = g * g
        gn[w] = (g2.T @ (a * a)) / m  # sum_i (g_i a_i^T)^2 / M
        if b is not None:
            gn[b] = g2.sum(0) / m
    rest = [i for i, v in enumerate(gn) if v is None]
    if rest:
        for i, sq in zip(rest, _squared_per_example(model, loss_fn, [params[i] for i in rest],
                                                     x, y), strict=True):  # fmt: skip
            gn[i] = sq
    return losses.detach().mean(), grads, [v for v in gn if v is not None]


def _linear_layers(
    model: nn.Module, params: list[Tensor]
) -> dict[nn.Module, tuple[int, int | None]]:
    """Each ``nn.Linear`` whose weight is among ``params``: (index of the weight, of the bias).

    A weight or bias shared by two modules is left to the vmap path.
    """
    index = {id(p): i for i, p in enumerate(params)}
    owners = Counter(id(p) for mod in model.modules() for p in mod.parameters(recurse=False))
    out = {}
    for mod in model.modules():
        if type(mod) is not nn.Linear or id(mod.weight) not in index:
            continue
        own = [mod.weight] + ([mod.bias] if mod.bias is not None else [])
        if any(owners[id(p)] != 1 for p in own):
            continue
        bias = index.get(id(mod.bias)) if mod.bias is not None else None
        out[mod] = (index[id(mod.weight)], bias)
    return out


def _squared_per_example(
    model: nn.Module, loss_fn: Loss, params: list[Tensor], x: Tensor, y: Tensor
) -> list[Tensor]:
    """(1/M) sum_i (grad ell_i)^2 for each of ``params`` by ``torch.func.vmap``."""
    names, rest = _split(model, params)

    def one(theta: tuple[Tensor, ...], xi: Tensor, yi: Tensor) -> Tensor:
        out = functional_call(
            model, ({**dict(zip(names, theta, strict=True)), **rest}), (xi.unsqueeze(0),)
        )
        return loss_fn(out, yi.unsqueeze(0)).sum()

    theta = tuple(p.detach() for p in params)
    per = vmap(grad(one), in_dims=(None, 0, 0))(theta, x, y)
    return [(g * g).mean(0) for g in per]


def gauss_newton_vmap(
    model: nn.Module, loss_fn: Loss, params: list[Tensor], x: Tensor, y: Tensor
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """:func:`gauss_newton` with ``torch.func.vmap`` for every parameter (the reference)."""
    names, rest = _split(model, params)
    theta = tuple(p.detach() for p in params)

    def one(th: tuple[Tensor, ...], xi: Tensor, yi: Tensor) -> Tensor:
        out = functional_call(model, ({**dict(zip(names, th, strict=True)), **rest}),
                              (xi.unsqueeze(0),))  # fmt: skip
        return loss_fn(out, yi.unsqueeze(0)).sum()

    per = vmap(grad(one), in_dims=(None, 0, 0))(theta, x, y)
    with torch.no_grad():
        loss = loss_fn(_call(model, names, theta, rest, x), y).mean()
    return loss, [g.mean(0) for g in per], [(g * g).mean(0) for g in per]


def hessian_diag(
    model: nn.Module,
    loss_fn: Loss,
    params: list[Tensor],
    x: Tensor,
    y: Tensor,
    *,
    absolute: bool = False,
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Mean loss, its gradient and the exact diagonal of its Hessian (P Hessian-vector products).

    With ``absolute=True`` the diagonal is Eq 36's (1/M) sum_i |diag grad^2 ell_i|, the mean of
    the per-example diagonals' absolute values (one Hessian per example: small models only).

    Returns:
        (loss, grads, hess_diag), one tensor per parameter.
    """
    names, rest = _split(model, params)
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def mean_loss(flat: Tensor) -> Tensor:
        theta = [t.view(s) for t, s in zip(flat.split(sizes), shapes, strict=True)]
        out = _call(model, names, theta, rest, x)
        return loss_fn(out, y).mean()

    flat = torch.cat([p.detach().reshape(-1) for p in params])
    g, loss = torch.func.grad_and_value(mean_loss)(flat)
    if absolute:

        def one(theta: Tensor, xi: Tensor, yi: Tensor) -> Tensor:
            parts = [t.view(s) for t, s in zip(theta.split(sizes), shapes, strict=True)]
            out = _call(model, names, parts, rest, xi.unsqueeze(0))
            return loss_fn(out, yi.unsqueeze(0)).sum()

        per = vmap(lambda xi, yi: torch.diagonal(hessian(one)(flat, xi, yi)))(x, y)
        h = per.abs().mean(0)
    else:
        h = torch.diagonal(hessian(mean_loss)(flat))
    split = lambda v: [t.view(s) for t, s in zip(v.split(sizes), shapes, strict=True)]  # noqa: E731
    return loss, split(g), split(h)
