"""The posterior predictive of a blrlib optimizer: probabilities averaged over draws from q.

probs = blrlib.optim.predict(model, opt, x_test, n_samples=32)   # (N, classes)
probs = blrlib.optim.predict(model, opt, x_test, n_samples=0)    # at the mode
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from blrlib.optim._base import BLROptimizer

__all__ = ["predict"]


@torch.no_grad()
def predict(model: nn.Module, opt: BLROptimizer, x: Tensor, n_samples: int = 32) -> Tensor:
    """The predictive (1/S) sum_s softmax(f(x; theta_s)), theta_s ~ q: probabilities, not logits.

    A single output column is read as a Bernoulli logit (sigmoid). With ``n_samples=0`` the
    prediction is at the mode (the mean for a Gaussian, sign(lam) for BayesBiNN).

    Raises:
        TypeError, ValueError: ``n_samples`` is not a non-negative int.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 0:
        raise ValueError(f"n_samples must be a non-negative int; got {n_samples!r}")
    if not isinstance(opt, BLROptimizer):
        raise TypeError(f"opt must be a blrlib.optim optimizer; got {type(opt).__name__}")

    def probs() -> Tensor:
        f = model(x)
        return torch.sigmoid(f) if f.shape[-1] == 1 else torch.softmax(f, dim=-1)

    if n_samples == 0:
        with opt.mode_params():
            return probs()
    total = None
    for _ in range(n_samples):
        with opt.sampled_params(train=False):
            p = probs()
        total = p if total is None else total + p
    return total / n_samples
