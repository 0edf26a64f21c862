"""Learning the keep probability pi1 per parameter group: Concrete dropout in the BLR (Sec 4.3).

    from blrlib import optim
    groups = [{"params": first}, {"params": rest, "dropout": optim.ConcreteDropout(0.9)}]
    opt = optim.AdamLike(groups, n_data=N, lr=1e-2)
    ...                                       # the usual sampled_params / backward / step loop
    opt.param_groups[1]["dropout"]            # the learned pi1 of that group

The end of Khan & Rue (2023) Sec 4.3 learns pi1 through a Concrete relaxation of the masks z
(Maddison et al. 2016; Gal, Hron & Kendall 2017, "Concrete dropout"). Here the masks of one
parameter group (its J input units, over all its weight tensors) are q(z) = prod_j
Bernoulli(z_j | pi1) with one natural parameter lam = logit(pi1), sufficient statistic sum_j z_j
and expectation parameter mu = J pi1. The objective is the BLR's (Eq 2),
E_q[bar-ell(theta)] - H(q), with the mixture's entropy taken as in Gal et al. (2017, Eq 3):
slab and spike far apart (the assumption of Eq 85-86) and of equal Gaussian entropy, so that the
part of -H(q) that depends on pi1 is -J H_Bernoulli(pi1), and the prior's part of E_q[bar-ell] is
pi1 delta / 2 sum_j ||m_j||^2 (the spike's is ~0). Without the equal-entropy convention the spike
precision s0 would enter through (1 - pi1) H(spike) and decide pi1 by itself, which is where
"we leave the justification leading to dropout" (Sec 4.3).

The step is the BLR (Eq 3-4) for this Bernoulli, whose entropy has natural gradient lam (App B,
Eq 64), in the form of Eq 52: lam <- lam - rho (N g + lam), with

    N g = grad_mu E_q[bar-ell] = (N d E[loss] / d pi1 + delta / 2 sum_j ||m_j||^2) / J,

and d E[loss] / d pi1 = (d loss / d lam) / (pi1 (1 - pi1)) from one relaxed draw
z~_j = sigmoid((lam + L_j) / tau), L_j standard logistic (Eq 50 at lam / 2, see
``families.sign_bernoulli.concrete``):

    d loss / d lam = sum_j (d loss / d z~_j) z~_j (1 - z~_j) / tau.

``families.sign_bernoulli.bayesbinn_update_`` does that step. While pi1 is learned, z~ replaces z in
Eq 42-43 (the mean and precision steps); prediction uses hard masks z ~ Bernoulli(pi1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from blrlib._checks import positive_float
from blrlib.families.sign_bernoulli import bayesbinn_update_, concrete, logistic_noise
from blrlib.families.spike_slab import check_pi1

__all__ = ["ConcreteDropout", "relaxed_masks"]

LOGIT_CLIP = 30.0  # |logit pi1| <= 30 keeps pi1 < 1 in float64, so that the masks stay on


@dataclass(frozen=True)
class ConcreteDropout:
    """The ``dropout=`` setting of a ``blrlib.optim`` optimizer (or group) that learns pi1.

    Args:
        pi1: the initial keep probability, in (0, 1).
        temperature: tau > 0 of the relaxed masks sigmoid((logit pi1 + L) / tau); Gal et al.
            (2017) use 0.1. As tau -> 0 they become hard Bernoulli(pi1) masks.
        lr: rho in (0, 1] of the step of logit pi1.

    Raises:
        TypeError, ValueError: a setting outside its range, naming it.
    """

    pi1: float = 0.9
    temperature: float = 0.1
    lr: float = 1e-3

    def __post_init__(self) -> None:
        if check_pi1(self.pi1, "pi1") == 1.0:
            raise ValueError("pi1 must be in (0, 1) to be learned; got 1.0")
        positive_float(self.temperature, "temperature")
        if positive_float(self.lr, "lr") > 1:
            raise ValueError(f"lr must be in (0, 1]; got {self.lr!r}")


def relaxed_masks(
    logit: float, n: int, temperature: float, *, generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None, device: torch.device | str | None = None,
) -> Tensor:  # fmt: skip
    """n relaxed masks z~ = sigmoid((logit + L) / tau) in (0, 1), L standard logistic (Eq 50).

    z~ > 1/2 exactly when a Bernoulli(sigmoid(logit)) draw is 1, at every temperature.
    Computed as (1 + tanh((logit / 2 + delta) / tau)) / 2 with delta = L / 2, the Concrete draw
    of ``SignBernoulli`` (Eq 50), whose {-1, +1} variable is 2 z - 1.

    Raises:
        TypeError, ValueError: ``temperature`` not a positive float.
    """
    tau = positive_float(temperature, "temperature")
    u = torch.rand(n, generator=generator, dtype=dtype, device=device)
    lam = torch.full_like(u, 0.5 * logit)
    return 0.5 * (1.0 + concrete(lam, logistic_noise(u), tau))


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


def logit_step(
    group: dict[str, Any],
    ps: list[Tensor],
    masks: dict[Tensor, Tensor],
    premask: dict[Tensor, Tensor],
) -> dict[str, float]:
    """One BLR step of logit pi1 (module docstring): the group's new "dropout_logit" and "dropout"
    (pi1 = sigmoid(logit)), for the caller to set after the step of the means that used the old pi1.

    ``ps`` hold the slab means m, ``p.grad`` the gradient at z~ * theta, ``premask[p]`` theta and
    ``masks[p]`` z~ (broadcastable, shape (1, J, 1, ...)).
    """
    setting: ConcreteDropout = group["learn_dropout"]
    pi1, n_data = group["dropout"], group["n_data"]
    d_logit, units, sq_norm = 0.0, 0, 0.0
    for p in ps:
        if p not in masks:
            continue
        z, dims = masks[p], [d for d in range(p.dim()) if d != 1]
        d_z = (p.grad * premask[p]).sum(dims, keepdim=True)  # d loss / d z~_j (chain rule)
        d_logit += float((d_z * z * (1.0 - z)).sum()) / setting.temperature
        units += p.shape[1]
        sq_norm += float((p * p).sum())
    if units == 0:
        return {}
    grad_mu = (d_logit / (pi1 * (1.0 - pi1)) + group["prior_prec"] * sq_norm / (2 * n_data)) / units
    lam = [torch.tensor([group["dropout_logit"]], dtype=torch.float64)]
    bayesbinn_update_(lam, [torch.tensor([grad_mu], dtype=torch.float64)], lr=setting.lr,
                      n_data=n_data, priors=None, clip=LOGIT_CLIP)  # fmt: skip
    return {"dropout_logit": float(lam[0]), "dropout": float(torch.sigmoid(lam[0]))}
