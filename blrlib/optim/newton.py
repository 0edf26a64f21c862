"""Eq 36-38 of Khan & Rue (2023): Newton-like and RMSprop/Adam-like BLR optimizers.

    opt = blrlib.optim.Newton(model.parameters(), lr=0.1, n_data=N, model=model,
                              loss_fn=lambda f, y: F.cross_entropy(f, y, reduction="none"))
    loss = opt.backward(x, y)   # gradient and exact Hessian diagonal of the batch mean
    opt.step()                  # s <- (1 - beta) s + beta diag H;  m <- m - lr g / s  (Eq 36)

Both are the diagonal-Gaussian BLR with the delta method (gradients at the mean); they differ
only in the Hessian estimate: the exact diagonal (Eq 36-37) or the squared gradient with a
square root (Eq 38), which is RMSprop, and Adam with Eq 77's momentum.

Derived in :ref:`optim-diag` (Newton) and :ref:`optim-adam` (RMSprop and Adam).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from blrlib.families.diag_gaussian import Momentum
from blrlib.optim._base import BLROptimizer, HessianEstimate, _number
from blrlib.optim._concrete import ConcreteDropout

__all__ = ["AdamLike", "Newton"]


class Newton(BLROptimizer):
    """Eq 37 (``beta = lr``) and Eq 36 (separate rates, |Hessian|), with App F's momentum.

    Args:
        params: parameters or groups. n_data: N (required). lr, beta: the rates of m and s.
        gamma: momentum (Eq 80). prior_prec: delta. hess_init: s_0 = N hess_init + delta.
        model, loss_fn: for :meth:`backward`, which computes the exact Hessian diagonal.
        absolute: Eq 36's estimate, the mean of the per-example |diagonals| (one Hessian per
            example), which keeps s >= delta on a non-convex loss; False: Eq 37's diagonal.
        dropout: pi1; below 1 this is Newton with dropout, Eq 42-43 with a diagonal S.
        generator: for the dropout masks.
        process_group: the ranks to keep in step (None: the default group, if any).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        *,
        n_data: float,
        lr: float = 0.1,
        beta: float | None = None,
        gamma: float = 0.0,
        prior_prec: float = 1.0,
        hess_init: float = 1.0,
        model: nn.Module | None = None,
        loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
        dropout: float | ConcreteDropout = 1.0,
        generator: torch.Generator | None = None,
        absolute: bool = False,
        process_group: Any = None,
    ) -> None:
        if not isinstance(absolute, bool):
            raise TypeError(f"absolute must be a bool; got {type(absolute).__name__}")
        hessian = HessianEstimate.ABS_AUTOGRAD if absolute else HessianEstimate.AUTOGRAD
        super().__init__(
            params, n_data=n_data, lr=lr, beta=lr if beta is None else beta, gamma=gamma,
            prior_prec=prior_prec, hess_init=hess_init, estimator="delta", hessian=hessian,
            momentum="natural", model=model, loss_fn=loss_fn, dropout=dropout,
            generator=generator, process_group=process_group,
        )  # fmt: skip


class AdamLike(BLROptimizer):
    """Eq 38 with Eq 77's momentum: ``torch.optim.Adam(weight_decay=prior_prec / n_data)``.

    The Hessian estimate is the squared gradient of bar-ell / N, the scaling its square root
    plus ``eps``; with ``betas[0] = 0`` and ``bias_correction=False`` it is RMSprop.
    Its scaling is not a posterior precision: near a minimum the squared mini-batch gradient
    estimates (1/M) of the Gauss-Newton diagonal (M the batch size), and the weights are
    never trained under the noise, so draws from N(m, 1 / (N (sqrt(h) + eps))) predict at
    chance (0.08 accuracy on digits, against 0.98 at the mean). :func:`blrlib.optim.predict`
    therefore refuses ``n_samples > 0`` here, except the dropout masks alone (``noise=False``).

    With ``dropout = pi1 < 1`` the squared gradient is that of the masked, 1/pi1-scaled
    gradient (Sec 4.2 applied to Eq 43): RMSprop/Adam with dropout, the parameters being
    torch's dropout weights divided by pi1 (tests/optim/test_dropout.py).

    Args:
        betas: (gamma, 1 - beta), each in [0, 1), as in Adam.
        dropout, generator: pi1 and the generator of the masks.
        process_group: the ranks to keep in step (None: the default group, if any).
    """

    samples_posterior = False

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        *,
        n_data: float,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        prior_prec: float = 1.0,
        bias_correction: bool = True,
        dropout: float | ConcreteDropout = 1.0,
        generator: torch.Generator | None = None,
        process_group: Any = None,
    ) -> None:
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair of floats in [0, 1); got {betas!r}")
        for i, b in enumerate(betas):
            _number(b, f"betas[{i}]", 0.0, 1.0, closed=False)
        super().__init__(
            params, n_data=n_data, lr=lr, beta=1.0 - betas[1], gamma=betas[0],
            prior_prec=prior_prec, eps=eps, estimator="delta", hessian=HessianEstimate.GRADSQ,
            momentum=Momentum.EMA, sqrt=True, bias_correction=bias_correction, dropout=dropout,
            generator=generator, process_group=process_group,
        )  # fmt: skip
