"""The posterior predictive of a blrlib optimizer: probabilities averaged over draws from q.

probs = blrlib.optim.predict(model, opt, x_test, n_samples=32)   # (N, classes)
probs = blrlib.optim.predict(model, opt, x_test, n_samples=0)    # at the mode

Used in :doc:`/book/optim` (uncertainty on two moons and digits).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from blrlib.optim._base import BLROptimizer

__all__ = ["predict"]


@torch.no_grad()
def predict(
    model: nn.Module, opt: BLROptimizer, x: Tensor, n_samples: int = 32, *, noise: bool = True
) -> Tensor:
    """The predictive (1/S) sum_s softmax(f(x; theta_s)), theta_s ~ q: probabilities, not logits.

    A single output column is read as a Bernoulli logit (sigmoid). With ``n_samples=0`` the
    prediction is at the mode (the mean for a Gaussian, sign(lam) for BayesBiNN). With
    ``noise=False`` (Gaussian optimizers with dropout) only the dropout masks are drawn, at
    the means: the MC-dropout predictive of Eq 84's delta method.

    Raises:
        TypeError, ValueError: ``n_samples`` is not a non-negative int.
        ValueError: ``n_samples > 0`` with noise for an optimizer whose q is not a posterior
            (``AdamLike``: its scaling sqrt(v) + eps is not a precision).
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 0:
        raise ValueError(f"n_samples must be a non-negative int; got {n_samples!r}")
    if not isinstance(opt, BLROptimizer):
        raise TypeError(f"opt must be a blrlib.optim optimizer; got {type(opt).__name__}")
    if n_samples > 0 and noise and not opt.samples_posterior:
        raise ValueError(
            f"n_samples: {type(opt).__name__} has no posterior to sample (its scaling "
            "sqrt(v) + eps is Adam's step size, not a precision); use n_samples=0 for the "
            "prediction at the mean, or noise=False for the dropout masks alone"
        )
    draw = {} if noise else {"noise": False}

    def probs() -> Tensor:
        f = model(x)
        return torch.sigmoid(f) if f.shape[-1] == 1 else torch.softmax(f, dim=-1)

    if n_samples == 0:
        with opt.mode_params():
            return probs()
    total = None
    for _ in range(n_samples):
        with opt.sampled_params(train=False, **draw):
            p = probs()
        total = p if total is None else total + p
    return total / n_samples
