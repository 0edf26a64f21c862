"""Tests for blrlib.sgd_bayes: Lyapunov solutions vs simulation, eps*, H*, noise covariance."""

from __future__ import annotations

import math

import pytest
import scipy.optimize
import torch
from torch.testing import assert_close

from blrlib import sgd_bayes


def _random_spd(P: int, cond: float = 10.0) -> torch.Tensor:
    Q, _ = torch.linalg.qr(torch.randn(P, P))
    return Q @ torch.diag(torch.logspace(0, math.log10(cond), P)) @ Q.T


def _quadratic_2d() -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-D Hessian A and noise covariance C, built inside the test so they are float64."""
    return torch.tensor([[1.0, 0.3], [0.3, 0.5]]), torch.tensor([[2.0, -0.6], [-0.6, 1.0]])


def test_discrete_covariance_matches_simulation() -> None:
    A2, C2 = _quadratic_2d()
    eps, S, chains, burn, snaps, gap = 0.5, 4, 4000, 400, 5, 200
    L = torch.linalg.cholesky(C2 / S)
    theta = torch.zeros(chains, 2)
    samples = []
    for t in range(burn + snaps * gap):
        noise = torch.randn(chains, 2) @ L.T
        theta = theta - eps * (theta @ A2 + noise)
        if t >= burn and (t - burn) % gap == gap - 1:
            samples.append(theta)
    x = torch.cat(samples)
    emp = x.T @ x / x.shape[0]  # the mean is exactly 0, so no centring
    sigma = sgd_bayes.stationary_covariance(A2, C2, eps=eps, batch_size=S, discrete=True)
    # Chains are independent; snapshots 200 steps apart have correlation
    # (1 - eps lambda_min)^200 < 1e-16, so n_eff = chains * snaps. A covariance entry's
    # standard error is sqrt((S_ii S_jj + S_ij^2) / n) <= sqrt(2 / n) max_k S_kk; allow 5 SE.
    # At eps = 0.5 the continuous-time solution is ~3 such tolerances away, so this
    # test tells the exact discrete covariance from the OU approximation.
    n_eff = chains * snaps
    atol = 5 * math.sqrt(2 / n_eff) * float(sigma.diagonal().max())
    assert_close(emp, sigma, rtol=0, atol=atol)


def test_continuous_matches_discrete_to_first_order_in_eps() -> None:
    A, C = _random_spd(4), _random_spd(4)
    lam_max = float(torch.linalg.eigvalsh(A).max())

    def rel_diff(eps: float) -> float:
        sc = sgd_bayes.stationary_covariance(A, C, eps=eps, batch_size=3)
        sd = sgd_bayes.stationary_covariance(A, C, eps=eps, batch_size=3, discrete=True)
        return float(torch.linalg.norm(sd - sc) / torch.linalg.norm(sc))

    eps = 0.1 / lam_max
    ratios = torch.tensor([rel_diff(eps / 10**k) / rel_diff(eps / 10 ** (k + 1)) for k in (0, 1)])
    # The difference is eps * c1 + O(eps^2): dividing eps by 10 divides it by 10 up to a
    # relative O(eps lambda_max) = O(0.1) correction at the largest step.
    assert_close(ratios, torch.full((2,), 10.0), rtol=0.15, atol=0)
    assert rel_diff(eps) < 2 * eps * lam_max


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_optimal_learning_rate_minimises_continuous_kl(seed: int) -> None:
    torch.manual_seed(seed)
    P, S, N = 5, 8, 1000
    A, C = _random_spd(P, 30.0), _random_spd(P, 30.0)  # general A, C: no proportionality
    posterior = torch.linalg.inv(N * A)
    zero = torch.zeros(P)

    def kl(log_eps: float) -> float:
        sigma = sgd_bayes.stationary_covariance(A, C, eps=math.exp(log_eps), batch_size=S)
        return float(sgd_bayes.gaussian_kl(zero, sigma, zero, posterior))

    res = scipy.optimize.minimize_scalar(
        kl, bounds=(-15, 5), method="bounded", options={"xatol": 1e-10}
    )
    eps_star = sgd_bayes.optimal_learning_rate(C, batch_size=S, n_data=N)
    # KL(log eps) is smooth with curvature P / 2 at its minimum, so Brent's method locates
    # it to about sqrt(machine eps) ~ 1e-8 in log eps; 1e-6 leaves room.
    assert_close(torch.tensor(res.x), torch.tensor(math.log(eps_star)), rtol=0, atol=1e-6)


def test_optimal_preconditioner_recovers_posterior() -> None:
    P, S, N, eps = 4, 10, 500, 0.01
    A, C = _random_spd(P, 50.0), _random_spd(P, 50.0)
    H = sgd_bayes.optimal_preconditioner(C, batch_size=S, eps=eps, n_data=N)
    sigma = sgd_bayes.stationary_covariance(A, C, eps=eps, batch_size=S, preconditioner=H)
    # An exact identity solved by a backward-stable Lyapunov solver on condition-50
    # matrices: rounding error is ~1e-13 relative.
    assert_close(sigma, torch.linalg.inv(N * A), rtol=1e-10, atol=1e-12)


def test_diagonal_preconditioner() -> None:
    P, S, N = 4, 10, 500
    A = _random_spd(P, 20.0)
    posterior, zero = torch.linalg.inv(N * A), torch.zeros(P)
    # Diagonally dominant C: a diagonal plus a small SPD part.
    C = torch.diag(torch.tensor([0.5, 1.0, 4.0, 8.0])) + 0.05 * _random_spd(P)
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


def test_bad_inputs() -> None:
    A, C = _quadratic_2d()
    not_sym = torch.tensor([[1.0, 0.5], [0.0, 1.0]])
    indefinite = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    cases = [
        (
            ValueError,
            "A",
            lambda: sgd_bayes.stationary_covariance(not_sym, C, eps=0.1, batch_size=1),
        ),
        (
            ValueError,
            "A",
            lambda: sgd_bayes.stationary_covariance(indefinite, C, eps=0.1, batch_size=1),
        ),
        (
            ValueError,
            "C",
            lambda: sgd_bayes.stationary_covariance(A, indefinite, eps=0.1, batch_size=1),
        ),
        (
            ValueError,
            "C",
            lambda: sgd_bayes.stationary_covariance(A, torch.eye(3), eps=0.1, batch_size=1),
        ),
        (ValueError, "eps", lambda: sgd_bayes.stationary_covariance(A, C, eps=-0.1, batch_size=1)),
        (
            ValueError,
            "eps",
            lambda: sgd_bayes.stationary_covariance(A, C, eps=5.0, batch_size=1, discrete=True),
        ),
        (
            TypeError,
            "batch_size",
            lambda: sgd_bayes.stationary_covariance(A, C, eps=0.1, batch_size=1.5),
        ),
        (
            ValueError,
            "batch_size",
            lambda: sgd_bayes.stationary_covariance(A, C, eps=0.1, batch_size=0),
        ),
        (
            ValueError,
            "preconditioner",
            lambda: sgd_bayes.stationary_covariance(
                A, C, eps=0.1, batch_size=1, preconditioner=indefinite
            ),
        ),
        (
            TypeError,
            "A",
            lambda: sgd_bayes.stationary_covariance([[1.0]], C, eps=0.1, batch_size=1),
        ),
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


def test_gaussian_kl_matches_torch_distributions() -> None:
    P = 3
    mq, mp, Sq, Sp = torch.randn(P), torch.randn(P), _random_spd(P), _random_spd(P)
    ref = torch.distributions.kl_divergence(
        torch.distributions.MultivariateNormal(mq, Sq),
        torch.distributions.MultivariateNormal(mp, Sp),
    )
    # Two Cholesky-based evaluations of the same closed form: rounding only.
    assert_close(sgd_bayes.gaussian_kl(mq, Sq, mp, Sp), ref, rtol=1e-10, atol=1e-12)


def test_sgld_with_exact_gradients_samples_the_posterior() -> None:
    A, N = _random_spd(3), 50
    Q = sgd_bayes.sgld_noise(torch.eye(3), eps=0.01, n_data=N)
    sigma = sgd_bayes.stationary_covariance(
        A, torch.zeros(3, 3), eps=0.01, batch_size=1, injected=Q
    )
    # continuous time: A Sigma + Sigma A = 2 I / N is solved by the posterior (N A)^-1
    assert_close(sigma, torch.linalg.inv(N * A))


def test_momentum_rescales_the_learning_rate_in_continuous_time() -> None:
    A, C = _random_spd(3), _random_spd(3)
    with_mu = sgd_bayes.stationary_covariance(A, C, eps=0.01, batch_size=2, momentum=0.9)
    assert_close(with_mu, sgd_bayes.stationary_covariance(A, C, eps=0.1, batch_size=2))
    # and the discrete-time covariance approaches it as eps -> 0 at fixed mu
    gaps = [
        float(
            torch.linalg.norm(
                sgd_bayes.stationary_covariance(
                    A, C, eps=e, batch_size=2, momentum=0.9, discrete=True
                )
                / e
                - with_mu / 0.01
            )
        )
        for e in (1e-3, 1e-4)
    ]
    assert gaps[1] < gaps[0] / 5


def test_sgfs_limits() -> None:
    F, N, S = _random_spd(3), 1000, 10
    K, Q = sgd_bayes.sgfs_step(F, eps=1e9, batch_size=S, n_data=N)
    # large eps: preconditioned SGD with step 2 S / (N + S) I_hat^-1 and no injected noise
    assert_close(K, 2 * S / (N + S) * torch.linalg.inv(F), rtol=1e-6, atol=0)
    assert float(Q.abs().max()) < 1e-9
    # small eps: Langevin, the injected noise is 2 K / N
    K, Q = sgd_bayes.sgfs_step(F, eps=1e-6, batch_size=S, n_data=N)
    assert_close(Q, 2 * K / N, rtol=1e-4, atol=0)


def test_polyak_covariance_is_the_large_T_variance_of_the_average() -> None:
    A2, C2 = _quadratic_2d()
    S, T = 3, 4000
    predicted = sgd_bayes.polyak_covariance(A2, C2, batch_size=S, n_steps=T)
    for eps in (0.1, 0.2):  # the same limit whatever the learning rate
        sigma = sgd_bayes.stationary_covariance(A2, C2, eps=eps, batch_size=S, discrete=True)
        M = torch.eye(2) - eps * A2
        # Var(mean of T stationary iterates) = (1/T^2) [T Sigma + sum_k (T - k)(M^k Sigma + .^T)]
        total, Mk = T * sigma, torch.eye(2)
        for k in range(1, T):
            Mk = Mk @ M
            total = total + (T - k) * (Mk @ sigma + sigma @ Mk.T)
        # the O(1 / (eps T^2)) remainder is about 1 / (eps lambda_min T) < 1% of it here
        assert_close(total / T**2, predicted, rtol=0.01, atol=0)
