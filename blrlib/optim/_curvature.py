"""Per-example gradients (Eq 45) and exact Hessian diagonals (Eq 36-37) of a network by torch.func.

    loss, grads, gn = gauss_newton(model, per_example_loss, params, x, y)
    # grads: mean_i grad ell_i;  gn: mean_i (grad ell_i)^2, one tensor per parameter

Both work on any ``nn.Module`` whose forward treats examples independently (no BatchNorm in
training mode: use eval mode or GroupNorm/LayerNorm there); the Hessian diagonal costs one
Hessian of all parameters and is meant for the small models of the tests and the book.
"""

from __future__ import annotations

from collections.abc import Callable

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

    Args:
        model: the network; params: its parameters to differentiate.
        loss_fn: (outputs, targets) -> per-example losses (M,).
        x, y: the batch.

    Returns:
        (loss, grads, gn), ``grads`` and ``gn`` one tensor per parameter.
    """
    names, rest = _split(model, params)

    def one(theta: tuple[Tensor, ...], xi: Tensor, yi: Tensor) -> Tensor:
        out = functional_call(
            model, ({**dict(zip(names, theta, strict=True)), **rest}), (xi.unsqueeze(0),)
        )
        return loss_fn(out, yi.unsqueeze(0)).sum()

    theta = tuple(p.detach() for p in params)
    per = vmap(grad(one), in_dims=(None, 0, 0))(theta, x, y)
    with torch.no_grad():
        out = _call(model, names, theta, rest, x)
        loss = loss_fn(out, y).mean()
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
