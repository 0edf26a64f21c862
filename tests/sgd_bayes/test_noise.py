"""Tests for blrlib.sgd_bayes.noise: per-example gradients and their covariance C."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from blrlib import sgd_bayes
from tests.sgd_bayes._problems import quadratic_2d


def test_per_example_gradients_and_noise_covariance_linear_regression() -> None:
    N, P = 30, 3
    X, y, theta = torch.randn(N, P), torch.randn(N), torch.randn(P)

    def loss_i(th: torch.Tensor) -> torch.Tensor:
        return 0.5 * (X @ th - y) ** 2

    G = sgd_bayes.per_example_gradients(loss_i, theta)
    loop = []
    for n in range(N):
        th = theta.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(0.5 * (X[n] @ th - y[n]) ** 2, th)
        loop.append(g)
    G_loop = torch.stack(loop)
    # Both are exact gradients in float64; differences are rounding only.
    assert_close(G, G_loop, rtol=1e-12, atol=1e-12)
    assert_close(G, (X @ theta - y)[:, None] * X, rtol=1e-12, atol=1e-12)

    C = sgd_bayes.gradient_noise_covariance(G)
    gbar = G_loop.mean(0)
    C_loop = sum(torch.outer(g - gbar, g - gbar) for g in G_loop) / N
    assert_close(C, C_loop, rtol=1e-12, atol=1e-12)  # same sum, different order: rounding
    # C / S is exactly the covariance of the mean of S draws with replacement; for S = 1
    # enumerate all N equally likely minibatches.
    assert_close(C, torch.cov(G.T, correction=0), rtol=1e-12, atol=1e-12)


def test_bad_inputs_name_the_argument() -> None:
    A, C = quadratic_2d()
    cases = [
        (TypeError, "loss_i", lambda: sgd_bayes.per_example_gradients(3, A[0])),
        (ValueError, "theta", lambda: sgd_bayes.per_example_gradients(lambda t: t, A)),
        (
            ValueError,
            "per_example_grads",
            lambda: sgd_bayes.gradient_noise_covariance(torch.ones(1, 2)),
        ),
    ]
    for exc, name, call in cases:
        with pytest.raises(exc, match=name):
            call()
