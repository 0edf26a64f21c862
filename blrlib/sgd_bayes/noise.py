"""The gradient noise of minibatch SGD (Mandt, Hoffman & Blei 2017, Section 3).

    G = sgd_bayes.per_example_gradients(loss_i, theta)   # (N, P)
    C = sgd_bayes.gradient_noise_covariance(G)           # a minibatch of S: covariance C / S

Derived in :ref:`sgd-ou`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["gradient_noise_covariance", "per_example_gradients"]


def per_example_gradients(loss_i: Callable[[Tensor], Tensor], theta: Tensor) -> Tensor:
    """Gradients of each example's loss at ``theta``, the rows of the Jacobian.

    Args:
        loss_i: maps theta (P,) to the per-example losses (N,).
        theta: parameters, shape (P,).

    Returns:
        The Jacobian d loss_i / d theta, shape (N, P).

    Raises:
        TypeError: ``loss_i`` is not callable or ``theta`` is not a Tensor.
        ValueError: ``theta`` is not 1-D or ``loss_i`` does not return shape (N,).
    """
    if not callable(loss_i):
        raise TypeError(f"loss_i must be callable; got {type(loss_i).__name__}")
    if not isinstance(theta, Tensor):
        raise TypeError(f"theta must be a torch.Tensor; got {type(theta).__name__}")
    if theta.dim() != 1:
        raise ValueError(f"theta: expected shape (P,); got {tuple(theta.shape)}")
    jac = torch.func.jacrev(loss_i)(theta)
    if jac.dim() != 2:
        raise ValueError("loss_i: must return per-example losses of shape (N,)")
    return jac


def gradient_noise_covariance(per_example_grads: Tensor) -> Tensor:
    """Covariance C of a single uniformly drawn example's gradient (Mandt et al., Section 3).

    C = (1/N) sum_n (g_n - g_bar)(g_n - g_bar)^T, the population covariance (divisor N,
    not N - 1), so that the mean gradient of a minibatch of S examples drawn with
    replacement has covariance exactly C / S. Without replacement multiply by
    (N - S) / (N - 1).

    Args:
        per_example_grads: gradients g_n of the per-example losses, shape (N, P), N >= 2.

    Returns:
        C, shape (P, P), symmetric positive semi-definite.

    Raises:
        TypeError: ``per_example_grads`` is not a Tensor.
        ValueError: it is not 2-D with at least two rows, or not finite.
    """
    G = per_example_grads
    if not isinstance(G, Tensor):
        raise TypeError(f"per_example_grads must be a torch.Tensor; got {type(G).__name__}")
    if G.dim() != 2 or G.shape[0] < 2:
        raise ValueError(f"per_example_grads: expected (N, P) with N >= 2; got {tuple(G.shape)}")
    if not torch.isfinite(G).all():
        raise ValueError("per_example_grads: must be finite")
    Gc = G - G.mean(0)
    C = Gc.T @ Gc / G.shape[0]
    return (C + C.T) / 2
