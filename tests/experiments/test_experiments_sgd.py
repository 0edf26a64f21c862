"""The SGD chapter's experiments: the test problem, the Monte Carlo errors and the pieces of
:mod:`blrlib.experiments.sgd_posterior` the chapter's claims rest on."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from blrlib import blr, families, sgd_bayes
from blrlib.experiments.sgd import _local_minimiser, jackknife, regression
from blrlib.experiments.sgd_posterior import logistic_seed, vem_fixed_point

CPU = torch.device("cpu")


def test_regression_posterior_is_the_exact_one() -> None:
    prob = regression(300, 3, seed=0, device=CPU)
    # unit noise and prior N(0, I): posterior precision X^T X + I, mean its solve with X^T y
    precision = prob.X.T @ prob.X + torch.eye(3)
    assert_close(prob.posterior, torch.linalg.inv(precision))
    assert_close(prob.theta, torch.linalg.solve(precision, prob.X.T @ prob.y), rtol=0, atol=1e-10)
    # theta* is the minimiser of the mean loss: its full-batch gradient vanishes
    grads = sgd_bayes.per_example_gradients(
        lambda t: prob.model.nll(t, prob.X, prob.y) + prob.model.regulariser(t) / prob.n,
        prob.theta,
    )
    assert float(grads.mean(0).abs().max()) < 1e-12


def test_regression_noise_is_close_to_the_hessian() -> None:
    # homoscedastic noise: C = E[r^2 x x^T] ~ sigma^2 A, the case B B^T proportional to A
    prob = regression(3000, 2, seed=1, device=CPU)
    assert float(torch.linalg.norm(prob.C - prob.A) / torch.linalg.norm(prob.A)) < 0.1


def test_local_minimiser_of_a_parabola_in_log_x() -> None:
    x = torch.logspace(-2, 0, 7)
    f = (x.log() - torch.log(torch.tensor(0.13))) ** 2
    assert abs(float(_local_minimiser(x, f)) - 0.13) < 1e-10


def test_jackknife_standard_error_of_a_mean() -> None:
    # 400 independent chains of 50 iid N(0, 4) draws: the SE of the grand mean is 2 / sqrt(2e4)
    x = 2 * torch.randn(50, 400, 1)
    value, se = jackknife(lambda xs: xs[0].mean(), [x], blocks=20)
    assert_close(value, x.mean())
    # the jackknife SE from 20 blocks is itself uncertain by about 1 / sqrt(2 * 19) = 16%
    assert abs(float(se) / (2 / math.sqrt(2e4)) - 1) < 0.5


def test_vem_fixed_point_is_near_the_evidence_maximiser() -> None:
    X = torch.randn(200, 5)
    y = X @ (torch.randn(5) / 2) + torch.randn(200)
    fixed = vem_fixed_point(X, y, batch_size=10)
    evidence = sgd_bayes.evidence_prior_precision(X, y, noise_precision=1.0)
    # q = SGD's stationary Gaussian at eps* differs from the posterior by a relative O(P/N)
    # in E|theta|^2, so the two fixed points differ by about that much (P/N = 2.5%)
    assert abs(fixed / evidence - 1) < 0.025


def test_blr_step_in_sgd_units() -> None:
    # the chapter's conversion: a BLR step with fixed precision Lambda and rate rho on the
    # total loss N L is an SGD step on the mean loss L with matrix rate eps H = rho N Lambda^-1
    N, P, rho = 50, 3, 0.3
    X, y = torch.randn(N, P), torch.randn(N)

    def mean_loss(theta: torch.Tensor) -> torch.Tensor:
        return 0.5 * (X @ theta - y).square().mean()

    root = torch.randn(P, P)
    Lam = root @ root.T + P * torch.eye(P)
    q = families.FixedCovGaussian(Lam)
    m = torch.randn(P)
    lam = q.to_natural((m,))
    new = blr.step(q, lam, lambda t: N * mean_loss(t), rho=rho, estimator="delta")
    sgd = m - rho * N * torch.linalg.solve(Lam, torch.func.grad(mean_loss)(m))
    # the same step computed two ways in float64: rounding only
    assert_close(q.to_expectation(new)[0], sgd, rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="module")
def logistic() -> dict:
    tiny = {"chains": 10, "burn": 10, "kept": 20, "thin": 2,
            "hmc": {"chains": 4, "samples": 20, "warmup": 20, "leapfrog": 5}}  # fmt: skip
    return logistic_seed(0, tiny, CPU)


def test_logistic_seed_reports_every_method_and_metric(logistic: dict) -> None:
    methods = {"map", "laplace", "hmc", "sgd", "sgd_diagonal"}
    for metric in ("nll", "max_prob_error", "mean_prob_error"):
        assert set(logistic[metric]) == methods
    assert logistic["max_prob_error"]["hmc"] == 0.0
    assert logistic["n_train"] + logistic["n_test"] == 569  # the whole breast-cancer set


def test_logistic_full_preconditioner_is_outside_the_stability_region(logistic: dict) -> None:
    # the chapter's claim that the full H* diverges here: eps* lambda_max(H* A) >= 2, and the
    # few steps taken from theta* leave it by many orders of magnitude
    assert logistic["stability"]["sgd_full"] > 2
    assert logistic["stability"]["sgd"] < 2 and logistic["stability"]["sgd_diagonal"] < 2
    assert logistic["full_distance"] > 1e6
    # and the library refuses a stationary covariance there
    with pytest.raises(ValueError, match="eps"):
        sgd_bayes.stationary_covariance(
            torch.diag(torch.tensor([1.0, 1e-3])), torch.diag(torch.tensor([1.0, 1e-6])),
            eps=1.0, batch_size=1, discrete=True,
            preconditioner=torch.diag(torch.tensor([1.0, 1e6])),
        )  # fmt: skip


def test_regression_hessian_and_noise_are_the_library_ones() -> None:
    # regression() writes A and C in closed form; local_quadratic differentiates the model
    prob = regression(200, 3, seed=2, device=CPU)
    A, C = sgd_bayes.local_quadratic(prob.model, prob.X, prob.y, prob.theta)
    # the same matrices by autograd and by formula, in float64: rounding only
    assert_close(prob.A, A, rtol=1e-10, atol=1e-12)
    assert_close(prob.C, C, rtol=1e-10, atol=1e-12)
