"""Learning the keep probability pi1 per parameter group (end of Khan & Rue 2023, Sec 4.3).

    from blrlib import optim
    groups = [{"params": first}, {"params": rest, "dropout": optim.ConcreteDropout(0.9)}]
    opt = optim.AdamLike(groups, n_data=N, lr=1e-2)
    ...                                       # the usual sampled_params / backward / step loop
    opt.param_groups[1]["dropout"]            # the learned pi1 of that group

The masks of one parameter group (its J input units, over all its weight tensors) are q(z) =
prod_j Bernoulli(z_j | pi1): an exponential family with natural parameter lam = logit(pi1),
statistic sum_j z_j and expectation parameter mu = J pi1. The objective is the BLR's (Eq 2),
E_q[bar-ell(theta)] - H(q), with the mixture's entropy taken as in Concrete dropout (Gal, Hron
& Kendall 2017, Eq 3): slab and spike far apart (the assumption of Eq 85-86) and of equal
Gaussian entropy, so that the part of -H(q) that depends on pi1 is -J H_Bernoulli(pi1). The
prior's part of E_q[bar-ell] is pi1 delta / 2 sum_j (||m_j||^2 + tr S_j^-1) (the spike's,
(1 - pi1) delta P / (2 s0) per unit, vanishes as s0 grows). Without the equal-entropy convention
the spike precision s0 would enter through (1 - pi1) H(spike) and decide pi1 by itself, which is
where "we leave the justification leading to dropout" (Sec 4.3).

The step is the BLR (Eq 3-4) for this Bernoulli, whose entropy has natural gradient lam (App B,
Eq 64), in the form of Eq 52:

    lam <- (1 - rho) lam - rho (N g + c),   c = delta / (2 J) sum_j (||m_j||^2 + tr S_j^-1),

a convex combination of lam and a target, so lam stays bounded without a clip. Here
g = grad_mu E_q[loss] = (1 / J) d E_z[loss] / d pi1, and, as E_z[loss] is linear in each z_j,

    d E_z[loss] / d pi1 = sum_j E[loss(z_j = 1) - loss(z_j = 0)] = sum_j E[d loss / d z_j (u)],

u ~ Uniform(0, 1) in place of z_j (the fundamental theorem of calculus). One draw of that is
the gradient at a *probe*: a unit whose mask is u instead of a Bernoulli draw, all other masks
being Bernoulli(pi1); ``probes`` units per weight tensor are probes at each step, chosen at
random, and g is the mean of d loss / d z_j over them, read from the same backward pass as
Eq 42-43 (d loss / d z_j = sum_i grad_ij theta_ij).

This is the zero-temperature limit of the Concrete estimator that Sec 4.3 suggests (Maddison
et al. 2016): with relaxed masks z~ = sigmoid((lam + L) / tau), E_L[d loss / d z~ * d z~ /
d lam] -> pi1 (1 - pi1) E_u[d loss / d z (u)] as tau -> 0, so that dividing by the Fisher
pi1 (1 - pi1), as the natural gradient does, leaves the probe's expectation. At tau > 0 that
division multiplies the estimate's variance by about 1 / (pi1 (1 - pi1)) (the relaxed gradient
is non-zero only on the rare draws near the threshold), and with a fixed rho a learned pi1
near 1 jumps between its bounds; a probe's variance does not depend on pi1.

A probe's mask u also enters the forward pass (that unit at strength u, 1/2 on average) and the
step of the means (z g / pi1 with z = u), a perturbation of dropout on a share ``probes`` / J of
the units at each step: keep it small. In ``experiments.dropout_learn_rate`` at n = 400 with 16
units per layer, 4 probes per layer raised the test NLL by 0.4 nats against 1 probe.

With a sampling estimator (VON, VOGN) tr S_j^-1 enters c; with the delta method (Newton, OGN,
AdamLike), which evaluates the loss at z * m and ignores the slab's noise, the prior term is
evaluated the same way and tr S_j^-1 is left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from blrlib._checks import count, positive_float
from blrlib.families.spike_slab import check_pi1

__all__ = ["ConcreteDropout"]


@dataclass(frozen=True)
class ConcreteDropout:
    """The ``dropout=`` setting of a ``blrlib.optim`` optimizer (or group) that learns pi1.

    Args:
        pi1: the initial keep probability, in (0, 1).
        lr: rho in (0, 1] of the step of logit pi1 (module docstring).
        probes: how many units of each weight tensor are probes at each step, >= 1.

    Raises:
        TypeError, ValueError: a setting outside its range, naming it.
    """

    pi1: float = 0.9
    lr: float = 1e-2
    probes: int = 1

    def __post_init__(self) -> None:
        if check_pi1(self.pi1, "pi1") == 1.0:
            raise ValueError("pi1 must be in (0, 1) to be learned; got 1.0")
        if positive_float(self.lr, "lr") > 1:
            raise ValueError(f"lr must be in (0, 1]; got {self.lr!r}")
        count(self.probes, "probes")


def learned(group: dict[str, Any]) -> ConcreteDropout | None:
    """The group's :class:`ConcreteDropout`, or None when its pi1 is fixed."""
    return group.get("learn_dropout")


def setup(group: dict[str, Any]) -> None:
    """Move a ConcreteDropout out of group["dropout"]: pi1 there, the setting and logit aside."""
    setting = group["dropout"]
    if isinstance(setting, ConcreteDropout):
        group["learn_dropout"] = setting
        group["dropout"] = setting.pi1
        group["dropout_logit"] = math.log(setting.pi1) - math.log1p(-setting.pi1)
    else:
        group.setdefault("learn_dropout", None)


def probe_masks(
    group: dict[str, Any], n_units: int, *, generator: torch.Generator | None,
    dtype: torch.dtype, device: torch.device,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Masks z of ``n_units`` units, Bernoulli(pi1) except at the probes: (z, probe indices).

    The probes, ``min(probes, n_units)`` units chosen uniformly without replacement, get
    z_j = u ~ Uniform(0, 1) (module docstring).
    """
    setting: ConcreteDropout = group["learn_dropout"]
    z = torch.empty(n_units, dtype=dtype, device=device)
    z.bernoulli_(group["dropout"], generator=generator)
    k = min(setting.probes, n_units)
    idx = torch.randperm(n_units, generator=generator, device=device)[:k]
    z[idx] = torch.rand(k, generator=generator, dtype=dtype, device=device)
    return z, idx


def logit_step(
    group: dict[str, Any],
    ps: list[Tensor],
    premask: dict[Tensor, tuple[Tensor, Tensor]],
    precisions: list[Tensor] | None,
) -> dict[str, float]:
    """One BLR step of logit pi1 (module docstring): the group's new "dropout_logit" and
    "dropout" (pi1 = sigmoid(logit)), for the caller to set after the step of the means (which
    used the old pi1).

    Args:
        group: the parameter group.
        ps: its parameters; ``p.grad`` is the gradient at z * theta.
        premask: ``p -> (theta, probe indices)`` for each masked weight tensor of the draw.
        precisions: s per parameter of ``ps`` (tr S^-1 enters the prior term), or None to
            leave it out (the delta method).
    """
    setting: ConcreteDropout = group["learn_dropout"]
    d_mean, units, sq_norm, trace = 0.0, 0, 0.0, 0.0
    for i, p in enumerate(ps):
        if p not in premask:
            continue
        theta, idx = premask[p]
        dims = [d for d in range(p.dim()) if d != 1]
        d_z = (p.grad * theta).sum(dims)  # d loss / d z_j = sum_i grad_ij theta_ij
        d_mean += float(d_z[idx].mean()) * p.shape[1]  # weighted by the tensor's J
        units += p.shape[1]
        sq_norm += float((p * p).sum())
        if precisions is not None:
            trace += float(precisions[i].reciprocal().sum())
    if units == 0:
        return {}
    grad_mu = d_mean / units
    prior = group["prior_prec"] * (sq_norm + trace) / (2 * units)
    rho, lam = setting.lr, group["dropout_logit"]
    lam = (1 - rho) * lam - rho * (group["n_data"] * grad_mu + prior)
    return {"dropout_logit": lam, "dropout": sigmoid(lam)}


def sigmoid(lam: float) -> float:
    """1 / (1 + exp(-lam)) without overflow; exactly 1.0 beyond lam ~ 37 in float64."""
    if lam >= 0:
        return 1.0 / (1.0 + math.exp(-lam))
    e = math.exp(lam)
    return e / (1.0 + e)
