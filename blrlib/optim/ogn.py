"""OGN and VOGN (Khan & Rue 2023, Eq 44-46): the BLR with a per-example Gauss-Newton Hessian.

    opt = blrlib.optim.VOGN(model.parameters(), lr=1e-3, n_data=N, model=model,
                            loss_fn=lambda f, y: F.cross_entropy(f, y, reduction="none"))
    with opt.sampled_params(train=True):   # theta ~ q (VOGN) or theta = m (OGN)
        loss = opt.backward(x, y)          # mean gradient and mean squared per-example gradient
    opt.step()

The Hessian diagonal is Eq 45, (1/M) sum_i (grad ell_i)^2 per example, computed with
``torch.func`` (vmap over the batch): exact per-example gradients, for small and medium models.
Eq 45 is the empirical Fisher (the paper calls it a Gauss-Newton approximation): for a
canonical-link likelihood it equals the Gauss-Newton diagonal only in expectation over y drawn
from the model. OGN evaluates it at the mean (delta method, Eq 44), so its precision converges
to Eq 45 at its fixed point (book/optim.ipynb checks it); VOGN at one draw theta ~ q (Eq 46).

Derived in :ref:`optim-ogn`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from blrlib.optim._base import BLROptimizer
from blrlib.optim._concrete import ConcreteDropout

__all__ = ["OGN", "VOGN"]


class OGN(BLROptimizer):
    """Online Gauss-Newton (Eq 44-45): delta method, Gauss-Newton Hessian, natural momentum.

    Args:
        params: parameters or groups.
        n_data: N, the number of training examples.
        lr: the rate of m.
        beta: the rate of s.
        gamma: momentum (Eq 80).
        prior_prec: delta.
        hess_init: h_0.
        model: the network.
        loss_fn: its per-example loss, (outputs, targets) -> (M,).
        dropout: pi1 (Eq 42-43 with Eq 45's Hessian).
        generator: for the draws and masks.
        process_group: the ranks to keep in step (None: the default group, if any), over
            which backward() averages.
    """

    _estimator = "delta"

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        *,
        n_data: float,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        lr: float = 1e-3,
        beta: float = 1e-3,
        gamma: float = 0.0,
        prior_prec: float = 1.0,
        hess_init: float = 0.0,
        dropout: float | ConcreteDropout = 1.0,
        generator: torch.Generator | None = None,
        process_group: Any = None,
    ) -> None:
        if model is None or loss_fn is None:
            raise ValueError("model, loss_fn: the per-example Gauss-Newton Hessian needs both")
        super().__init__(
            params, n_data=n_data, lr=lr, beta=beta, gamma=gamma, prior_prec=prior_prec,
            hess_init=hess_init, estimator=self._estimator, hessian="gauss_newton",
            momentum="natural", model=model, loss_fn=loss_fn, dropout=dropout, generator=generator,
            process_group=process_group,
        )  # fmt: skip


class VOGN(OGN):
    """Variational OGN (Eq 46 with Eq 45): the same, at one draw theta ~ q per step."""

    _estimator = "mc"
