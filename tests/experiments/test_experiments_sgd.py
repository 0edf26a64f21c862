"""The SGD chapter's test problem: its posterior is exact and its gradient noise is close to A."""

from __future__ import annotations

import torch
from torch.testing import assert_close

from blrlib.experiments.sgd import _local_minimiser, regression


def test_regression_posterior_is_the_exact_one() -> None:
    prob = regression(300, 3, seed=0, device=torch.device("cpu"))
    # unit noise and prior N(0, I): posterior precision X^T X + I, mean its solve with X^T y
    precision = prob.X.T @ prob.X + torch.eye(3)
    assert_close(prob.posterior, torch.linalg.inv(precision))
    assert_close(prob.theta, torch.linalg.solve(precision, prob.X.T @ prob.y), rtol=0, atol=1e-6)


def test_regression_noise_is_close_to_the_hessian() -> None:
    # homoscedastic noise: C = E[r^2 x x^T] ~ sigma^2 A, the case B B^T proportional to A
    prob = regression(3000, 2, seed=1, device=torch.device("cpu"))
    assert float(torch.linalg.norm(prob.C - prob.A) / torch.linalg.norm(prob.A)) < 0.1


def test_local_minimiser_of_a_parabola_in_log_x() -> None:
    x = torch.logspace(-2, 0, 7)
    f = (x.log() - torch.log(torch.tensor(0.13))) ** 2
    assert abs(_local_minimiser(x, f) - 0.13) < 1e-10
