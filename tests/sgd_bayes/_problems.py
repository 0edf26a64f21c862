"""Small quadratic problems shared by the tests of blrlib.sgd_bayes."""

from __future__ import annotations

import math

import torch


def random_spd(P: int, cond: float = 10.0) -> torch.Tensor:
    Q, _ = torch.linalg.qr(torch.randn(P, P))
    return Q @ torch.diag(torch.logspace(0, math.log10(cond), P)) @ Q.T


def quadratic_2d() -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-D Hessian A and noise covariance C, built inside the test so they are float64."""
    return torch.tensor([[1.0, 0.3], [0.3, 0.5]]), torch.tensor([[2.0, -0.6], [-0.6, 1.0]])
