"""Tests for blrlib.sgd_bayes.optimal: eps* and H* minimise the KL they are derived from."""

from __future__ import annotations

import math

import pytest
import scipy.optimize
import torch
from torch.testing import assert_close

from blrlib import sgd_bayes
from tests.sgd_bayes._problems import quadratic_2d, random_spd


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_optimal_learning_rate_minimises_continuous_kl(seed: int) -> None:
    torch.manual_seed(seed)
    P, S, N = 5, 8, 1000
    A, C = random_spd(P, 30.0), random_spd(P, 30.0)  # general A, C: no proportionality
    posterior = torch.linalg.inv(N * A)
    zero = torch.zeros(P)

    def kl(log_eps: float) -> float:
        sigma = sgd_bayes.stationary_covariance(A, C, eps=math.exp(log_eps), batch_size=S)
        return float(sgd_bayes.gaussian_kl(zero, sigma, zero, posterior))

    # search below the stability edge eps lambda_max(A) = 2 of the iteration the OU approximates
    edge = math.log(1.9 / float(torch.linalg.eigvalsh(A).max()))
    res = scipy.optimize.minimize_scalar(
        kl, bounds=(-15, edge), method="bounded", options={"xatol": 1e-10}
    )
    eps_star = sgd_bayes.optimal_learning_rate(C, batch_size=S, n_data=N)
    # KL(log eps) is smooth with curvature P / 2 at its minimum, so Brent's method locates
    # it to about sqrt(machine eps) ~ 1e-8 in log eps; 1e-6 leaves room.
    assert_close(torch.tensor(res.x), torch.tensor(math.log(eps_star)), rtol=0, atol=1e-6)


def test_optimal_preconditioner_recovers_posterior() -> None:
    # N large enough that eps H* A = (2 S / N) C^-1 A stays inside the stability region
    P, S, N, eps = 4, 10, 50_000, 0.01
    A, C = random_spd(P, 50.0), random_spd(P, 50.0)
    H = sgd_bayes.optimal_preconditioner(C, batch_size=S, eps=eps, n_data=N)
    sigma = sgd_bayes.stationary_covariance(A, C, eps=eps, batch_size=S, preconditioner=H)
    # An exact identity solved by a backward-stable Lyapunov solver on condition-50
    # matrices: rounding error is ~1e-13 relative.
    assert_close(sigma, torch.linalg.inv(N * A), rtol=1e-10, atol=1e-12)


def test_diagonal_preconditioner() -> None:
    P, S, N = 4, 10, 500
    A = random_spd(P, 20.0)
    posterior, zero = torch.linalg.inv(N * A), torch.zeros(P)
    # Diagonally dominant C: a diagonal plus a small SPD part.
    C = torch.diag(torch.tensor([0.5, 1.0, 4.0, 8.0])) + 0.05 * random_spd(P)
    eps = sgd_bayes.optimal_learning_rate(C, batch_size=S, n_data=N)

    def kl(H: torch.Tensor | None) -> float:
        sigma = sgd_bayes.stationary_covariance(A, C, eps=eps, batch_size=S, preconditioner=H)
        return float(sgd_bayes.gaussian_kl(zero, sigma, zero, posterior))

    H_diag = sgd_bayes.optimal_preconditioner(C, batch_size=S, eps=eps, n_data=N, diagonal=True)
    H_full = sgd_bayes.optimal_preconditioner(C, batch_size=S, eps=eps, n_data=N)
    assert kl(H_full) < 1e-10 and kl(H_diag) <= kl(None)

    # With C diagonal the two preconditioners coincide and the covariance is the posterior;
    # both are closed forms of the same expression, so agreement is to rounding (1e-12).
    Cd = torch.diag(C.diagonal())
    assert_close(
        sgd_bayes.optimal_preconditioner(Cd, batch_size=S, eps=eps, n_data=N, diagonal=True),
        sgd_bayes.optimal_preconditioner(Cd, batch_size=S, eps=eps, n_data=N),
        rtol=1e-12,
        atol=0,
    )


def test_gaussian_kl_matches_torch_distributions() -> None:
    P = 3
    mq, mp, Sq, Sp = torch.randn(P), torch.randn(P), random_spd(P), random_spd(P)
    ref = torch.distributions.kl_divergence(
        torch.distributions.MultivariateNormal(mq, Sq),
        torch.distributions.MultivariateNormal(mp, Sp),
    )
    # Two Cholesky-based evaluations of the same closed form: rounding only.
    assert_close(sgd_bayes.gaussian_kl(mq, Sq, mp, Sp), ref, rtol=1e-10, atol=1e-12)


def test_bad_inputs_name_the_argument() -> None:
    A, C = quadratic_2d()
    indefinite = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    cases = [
        (ValueError, "cov_q", lambda: sgd_bayes.gaussian_kl(A[0], indefinite, A[0], C)),
        (ValueError, "mean_p", lambda: sgd_bayes.gaussian_kl(A[0], A, torch.zeros(3), C)),
        (TypeError, "mean_q", lambda: sgd_bayes.gaussian_kl(None, A, A[0], C)),
        (
            ValueError,
            "C",
            lambda: sgd_bayes.optimal_learning_rate(torch.zeros(2, 2), batch_size=1, n_data=10),
        ),
        (ValueError, "n_data", lambda: sgd_bayes.optimal_learning_rate(C, batch_size=1, n_data=0)),
        (
            ValueError,
            "C",
            lambda: sgd_bayes.optimal_preconditioner(
                torch.zeros(2, 2), batch_size=1, eps=0.1, n_data=10
            ),
        ),
        (
            ValueError,
            "C",
            lambda: sgd_bayes.optimal_preconditioner(
                torch.zeros(2, 2), batch_size=1, eps=0.1, n_data=10, diagonal=True
            ),
        ),
        (
            TypeError,
            "eps",
            lambda: sgd_bayes.optimal_preconditioner(C, batch_size=1, eps="0.1", n_data=10),
        ),
    ]
    for exc, name, call in cases:
        with pytest.raises(exc, match=name):
            call()
