"""A variational online Newton optimizer with Adam's state (Khan & Rue 2023, Sec 4.4, Eq 46).

    opt = blrlib.optim.VON(model.parameters(), lr=0.1, n_data=N)
    for x, y in loader:
        with opt.sampled_params(train=True):   # theta = m + eps / sqrt(s)
            F.cross_entropy(model(x), y).backward()
        opt.step()                             # g and h_hat = (theta - m) s g from that backward

One forward and one backward at one draw: E_q[grad] is estimated by g = grad(theta) and
E_q[diag Hessian] by Price's identity in Hessian-free form, (theta - m) s g (App D, as in the
``reparam`` estimator of ``blrlib.estimators``). The state is h and Eq 77's momentum: Adam's size.
A step adds to Adam's work a random number per weight and a few passes over the weights;
``python -m blrlib.bench optim`` measures what that costs on a machine (on one CPU thread the
committed record has 1.45-1.76 Adam steps for MLPs of 26k-4.3M weights).

Derived in :ref:`optim-von`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from blrlib.optim._base import BLROptimizer
from blrlib.optim._concrete import ConcreteDropout
from blrlib.optim._draws import Draws

__all__ = ["VON"]


class VON(BLROptimizer):
    """Variational online Newton with the reparameterisation Hessian estimate.

    Args:
        params: parameters or groups. n_data: N (required; the loss is the batch mean).
        lr: rate of the mean (Adam-like magnitudes: the step is lr g / (h + delta / N)).
        beta: rate of h. gamma: Eq 77 momentum of the gradient. prior_prec: delta.
        hess_init: h_0 > 0, the initial precision per example (s_0 = N h_0 + delta).
        positive: the correction that keeps s > 0 when h_hat < 0 (on by default; with it off
            a step equals ``blr.step`` exactly, see tests/optim/test_von.py).
        generator: for the draws (and the dropout masks).
        dropout: pi1; below 1 theta = z (m + eps / sqrt(s)), the full draw of App G.
        draws: ``"gaussian"`` (eps ~ N(0, I), the default) or ``"rademacher"`` (eps_j = +-1,
            about a sixth of the cost of a Gaussian number on a CPU; the Hessian estimate keeps
            its mean on a quadratic, see ``blrlib.optim._draws``).
        process_group: the ranks to keep in step (None: the default group, if any).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        *,
        n_data: float,
        lr: float = 0.1,
        beta: float = 1e-4,
        gamma: float = 0.9,
        prior_prec: float = 1.0,
        hess_init: float = 1.0,
        positive: bool = True,
        generator: torch.Generator | None = None,
        dropout: float | ConcreteDropout = 1.0,
        draws: Draws | str = Draws.GAUSSIAN,
        process_group: Any = None,
    ) -> None:
        if isinstance(hess_init, (int, float)) and not isinstance(hess_init, bool):
            if hess_init <= 0:
                raise ValueError(f"hess_init must be positive; got {hess_init!r}")
        super().__init__(
            params, n_data=n_data, lr=lr, beta=beta, gamma=gamma, prior_prec=prior_prec,
            hess_init=hess_init, estimator="mc", hessian="reparam", momentum="ema",
            bias_correction=True, positive=positive, generator=generator, dropout=dropout,
            draws=draws,
            process_group=process_group,
        )  # fmt: skip
