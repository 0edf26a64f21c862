"""Scores of predictive distributions: accuracy, negative log-likelihood, ECE, Brier.

    from blrlib import metrics
    probs = torch.tensor([0.9, 0.2, 0.6])            # p(y = 1 | x) for a binary problem
    y = torch.tensor([1.0, 0.0, 0.0])
    metrics.nll(probs, y), metrics.ece(probs, y, n_bins=10)

Binary problems pass p(y = 1 | x) of shape (N,); K-class problems pass probabilities (N, K).
Labels ``y`` are class indices 0..K-1 of shape (N,) or (N, 1), as integers or floats.
Every score is a mean over the N examples.

Used by every chapter; :doc:`/book/conventions` describes how methods are compared.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from blrlib import _checks

__all__ = ["accuracy", "brier", "ece", "gaussian_nll", "nll"]


def _as_classes(probs: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Probabilities (N, K) and integer labels (N,), from either layout.

    Raises:
        ValueError: ``y`` not of shape (N,) or (N, 1), or not class indices 0..K-1; ``probs``
            of another shape or not probabilities.
    """
    probs, y = _checks.tensor(probs, "probs"), _checks.tensor(y, "y")
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dim() != 1:
        raise ValueError(f"y: expected labels of shape (N,) or (N, 1); got {tuple(y.shape)}")
    _checks.nonempty(y, "y", "(N,) or (N, 1)")
    if not probs.is_floating_point():
        raise TypeError(f"probs must be a floating-point tensor; got {probs.dtype}")
    if probs.dim() == 1:
        probs = torch.stack([1 - probs, probs], -1)
    if probs.dim() != 2 or probs.shape[0] != y.shape[0]:
        raise ValueError(
            f"probs: expected (N,) or (N, K) for N = {y.shape[0]}; got {tuple(probs.shape)}"
        )
    if (probs < 0).any() or (probs > 1).any() or not torch.isfinite(probs).all():
        raise ValueError("probs: must be probabilities in [0, 1]")
    labels = y.long()
    k = probs.shape[1]
    if (labels != y).any() or (labels < 0).any() or (labels >= k).any():
        raise ValueError(f"y: labels must be class indices 0..{k - 1}; got values outside")
    return probs, labels


def accuracy(probs: Tensor, y: Tensor) -> float:
    """The fraction of examples whose most probable class is the label."""
    p, labels = _as_classes(probs, y)
    return float((p.argmax(-1) == labels).to(p.dtype).mean())


def nll(probs: Tensor, y: Tensor, *, eps: float = 1e-12) -> float:
    """The mean of -log p(y_i | x_i), with probabilities clipped at ``eps``."""
    p, labels = _as_classes(probs, y)
    return float(-torch.log(p.gather(1, labels[:, None]).clamp_min(eps)).mean())


def brier(probs: Tensor, y: Tensor) -> float:
    """The mean squared distance between the probabilities and the one-hot labels."""
    p, labels = _as_classes(probs, y)
    onehot = torch.nn.functional.one_hot(labels, p.shape[1]).to(p.dtype)
    return float(((p - onehot) ** 2).sum(-1).mean())


def ece(probs: Tensor, y: Tensor, *, n_bins: int = 10) -> float:
    """Expected calibration error: sum_b (|B_b| / N) |accuracy(B_b) - confidence(B_b)|.

    Examples are binned by their confidence, the largest predicted probability, into
    ``n_bins`` equal-width bins over [0, 1].
    """
    _checks.count(n_bins, "n_bins")
    p, labels = _as_classes(probs, y)
    confidence, predicted = p.max(-1)
    correct = (predicted == labels).to(p.dtype)
    bins = torch.clamp((confidence * n_bins).long(), max=n_bins - 1)
    total = torch.zeros((), dtype=p.dtype)
    for b in range(n_bins):
        members = bins == b
        if members.any():
            gap = (correct[members].mean() - confidence[members].mean()).abs()
            total = total + members.to(p.dtype).mean() * gap
    return float(total)


def gaussian_nll(mean: Tensor, var: Tensor, y: Tensor) -> float:
    """The mean of -log N(y_i | mean_i, var_i) for a Gaussian predictive.

    ``mean``, ``var`` and ``y`` share one shape and dtype; with a mean of shape (N,), y of
    shape (N, 1) is read as (N,) (the Conventions page).
    """
    mean, var, y = (_checks.tensor(t, n) for t, n in ((mean, "mean"), (var, "var"), (y, "y")))
    _checks.nonempty(mean, "mean")
    if mean.dim() == 1:
        y = _checks.scalar_targets(y, "y", mean.shape[0])
    if not (mean.shape == var.shape == y.shape):
        raise ValueError(
            f"mean, var, y: shapes differ {tuple(mean.shape)}, {tuple(var.shape)}, {tuple(y.shape)}"
        )
    for t, n in ((var, "var"), (y, "y")):
        _checks.same_float_dtype(t, n, mean.dtype, "mean")
    if not (var > 0).all():
        raise ValueError("var: must be positive")
    return float((0.5 * torch.log(2 * math.pi * var) + 0.5 * (y - mean) ** 2 / var).mean())
