"""Dropout in the BLR optimizers: the unit masks of Eq 39 and the estimator of Eq 84.

    opt = blrlib.optim.AdamLike(model.parameters(), n_data=N, dropout=0.9)
    with opt.sampled_params(train=True):   # column j of every weight times z_j
        loss_fn(model(x), y).backward()
    opt.step()                             # z g / pi1 and z h_hat / pi1: Eq 42-43

With ``dropout = pi1 < 1`` the candidate of every weight tensor (dim >= 2) is the spike and
slab of Eq 41 (Khan & Rue 2023) per input unit, column j of the weight (Eq 39):
``sampled_params(train=True)`` multiplies column j by z_j ~ Bernoulli(pi1), unscaled, and
``step`` uses z g / pi1 and z h_hat / pi1, the dropout estimator of Eq 84 with Eq 85-86, so
that the step is Eq 42-43 with the optimizer's diagonal S (Newton, RMSprop/Adam, OGN, VON with
dropout; ``blrlib.estimators.dropout_grad_hess`` is the same estimator for ``blr.step``).

Two departures from Eq 42-43 as printed, both kept on purpose:

* The prior term is exact. Eq 42-43 differentiate bar-ell, prior included, at z * theta: a
  prior gradient z delta theta / pi1 and curvature z delta / pi1. Eq 82-83 need only their
  expectations over q, delta m and delta, which the optimizers use (as without dropout).
* Sampling estimators (VON, VOGN) keep the slab's noise: theta = z (m + eps / sqrt(s)), the
  reparameterised draw of App G before it drops eps (Eq 84 drops it). Their loss term is then
  an unbiased one-draw estimate of Eq 82-83's, up to the spike's own noise (1 - z) eps2 /
  sqrt(s0), which is left out (s0 -> infinity). The delta-method ones (Newton, OGN, AdamLike)
  are Eq 84 exactly.

A group whose ``dropout`` is a :class:`~blrlib.optim.ConcreteDropout` learns its pi1
(``_concrete``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from blrlib.optim import _concrete

__all__ = ["active", "draw_", "scale"]


def active(group: dict[str, Any]) -> bool:
    """Whether a group draws masks: pi1 < 1, or a learned pi1 (which may reach 1.0)."""
    return group.get("dropout", 1.0) < 1 or _concrete.learned(group) is not None


def draw_(
    group: dict[str, Any],
    ps: list[Tensor],
    *,
    train: bool,
    generator: torch.Generator | None,
    masks: dict[Tensor, Tensor],
    premask: dict[Tensor, tuple[Tensor, Tensor]],
) -> None:
    """theta <- z * theta per input unit (dim 1) of each weight tensor, in place.

    z ~ Bernoulli(pi1), unscaled (Eq 39): the weights are the slab's, not torch's pi1-scaled
    ones. When training, z is kept in ``masks`` (broadcastable, shape (1, J, 1, ...)) for the
    step; a group that learns pi1 also keeps theta and its probe units in ``premask``.
    """
    learn = train and _concrete.learned(group) is not None
    for p in ps:
        if p.dim() < 2:
            continue  # biases belong to no unit (Eq 39 has no offset): never dropped
        if learn:
            z, idx = _concrete.probe_masks(
                group, p.shape[1], generator=generator, dtype=p.dtype, device=p.device
            )
            premask[p] = (p.clone(), idx)
        else:
            z = torch.empty(p.shape[1], dtype=p.dtype, device=p.device)
            z.bernoulli_(group["dropout"], generator=generator)
        z = z.view(1, -1, *([1] * (p.dim() - 2)))
        p.mul_(z)
        if train:
            masks[p] = z


def scale(
    values: list[Tensor], ps: list[Tensor], masks: dict[Tensor, Tensor], pi1: float
) -> list[Tensor]:
    """z v / pi1 for each masked parameter, v unchanged for the others (Eq 84).

    Applied to the gradient (Eq 42) and to the Hessian estimate (Eq 43): the 1/pi1 turns one
    mask's derivatives into an unbiased estimate of the slab's expectation.
    """
    return [v * masks[p] / pi1 if p in masks else v for v, p in zip(values, ps, strict=True)]
