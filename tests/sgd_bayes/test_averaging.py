"""Tests for blrlib.sgd_bayes.averaging: Polyak and window averages, the sum over lags."""

from __future__ import annotations

import torch
from torch.testing import assert_close

from blrlib import sgd_bayes
from tests.sgd_bayes._problems import quadratic_2d


def _mean_of_iterates(A: torch.Tensor, sigma: torch.Tensor, eps: float, T: int) -> torch.Tensor:
    """Var(mean of T stationary iterates) = (1/T^2) [T Sigma + sum_k (T - k)(M^k Sigma + .^T)],
    M = I - eps A, summed term by term (the library uses the closed form of the sum)."""
    M = torch.eye(len(A)) - eps * A
    total, Mk = T * sigma, torch.eye(len(A))
    for k in range(1, T):
        Mk = Mk @ M
        total = total + (T - k) * (Mk @ sigma + sigma @ Mk.T)
    return total / T**2


def test_polyak_covariance_is_the_large_T_variance_of_the_average() -> None:
    A2, C2 = quadratic_2d()
    S, T = 3, 4000
    predicted = sgd_bayes.polyak_covariance(A2, C2, batch_size=S, n_steps=T)
    for eps in (0.1, 0.2):  # the same limit whatever the learning rate
        sigma = sgd_bayes.stationary_covariance(A2, C2, eps=eps, batch_size=S, discrete=True)
        # the O(1 / (eps T^2)) remainder is about 1 / (eps lambda_min T) < 1% of it here
        assert_close(_mean_of_iterates(A2, sigma, eps, T), predicted, rtol=0.01, atol=0)


def test_window_covariance_is_the_sum_over_lags() -> None:
    A2, C2 = quadratic_2d()
    S, T, eps = 3, 25, 0.3
    sigma = sgd_bayes.stationary_covariance(A2, C2, eps=eps, batch_size=S, discrete=True)
    window = sgd_bayes.window_covariance(A2, C2, eps=eps, batch_size=S, window=T)
    # the same sum, in closed form and term by term: rounding only
    assert_close(window, _mean_of_iterates(A2, sigma, eps, T), rtol=1e-10, atol=0)
