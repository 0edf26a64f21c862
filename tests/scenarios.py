"""Shared test problems: small generated regression and classification losses (float64)."""

from __future__ import annotations

import torch
from torch import Tensor

from blrlib import data
from blrlib.estimators import SumLoss


def logistic(n: int = 60, dim: int = 4, delta: float = 1.0, seed: int = 0):
    """Logistic regression with a N(0, 1/delta) prior: (X, y, loss) with loss a SumLoss."""
    X, y = data.logistic_regression(n, dim, seed=seed)

    def per_example(theta: Tensor) -> Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(X @ theta, y, reduction="none")

    return X, y, SumLoss(per_example, lambda theta: 0.5 * delta * theta @ theta)


def ridge(n: int = 40, dim: int = 3, delta: float = 2.0, noise: float = 0.5, seed: int = 0):
    """Bayesian linear regression: loss, and the closed-form posterior mean and covariance.

    bar-ell(theta) = ||y - X theta||^2 / (2 noise^2) + delta ||theta||^2 / 2 (Sec 1.3.3), whose
    exact posterior is N(m*, S*^-1) with S* = X^T X / noise^2 + delta I and S* m* = X^T y / noise^2.
    """
    X, y = data.linear_regression(n, dim, noise=noise, seed=seed)

    def per_example(theta: Tensor) -> Tensor:
        return 0.5 * (y - X @ theta) ** 2 / noise**2

    loss = SumLoss(per_example, lambda theta: 0.5 * delta * theta @ theta)
    precision = X.T @ X / noise**2 + delta * torch.eye(dim, dtype=X.dtype)
    mean = torch.linalg.solve(precision, X.T @ y / noise**2)
    return X, y, loss, mean, torch.linalg.inv(precision)
