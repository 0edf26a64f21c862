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


def _kron_lyapunov(M: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """Solve M X + X M^T = R by the Kronecker-sum linear system: a reference independent of
    the Bartels-Stewart solver that stationary_covariance calls."""
    P = M.shape[0]
    eye = torch.eye(P)
    op = torch.kron(M, eye) + torch.kron(eye, M)  # row-major vec(M X + X M^T)
    return torch.linalg.solve(op, R.reshape(-1)).reshape(P, P)


def test_momentum_rescales_the_learning_rate_in_continuous_time() -> None:
    A, C = _random_spd(3), _random_spd(3)
    eps, mu, S = 0.01, 0.9, 2
    with_mu = sgd_bayes.stationary_covariance(A, C, eps=eps, batch_size=S, momentum=mu)
    # plain SGD at eps / (1 - mu): A Sigma + Sigma A = (eps / ((1 - mu) S)) C, solved by vec
    reference = _kron_lyapunov(A, eps / ((1 - mu) * S) * C)
    # two exact solutions of the same 3x3 equation (condition 10): rounding only
    assert_close(with_mu, reference, rtol=1e-10, atol=1e-14)


def test_discrete_momentum_covariance_matches_simulation() -> None:
    A2, C2 = _quadratic_2d()
    eps, mu, S, chains = 0.4, 0.5, 2, 4000
    sigma = sgd_bayes.stationary_covariance(
        A2, C2, eps=eps, batch_size=S, momentum=mu, discrete=True
    )
    L = torch.linalg.cholesky(C2 / S)
    theta, v, samples = torch.zeros(chains, 2), torch.zeros(chains, 2), []
    for t in range(1000):
        v = mu * v - eps * (theta @ A2 + torch.randn(chains, 2) @ L.T)  # heavy ball
        theta = theta + v
        if t >= 400 and t % 150 == 0:
            samples.append(theta)
    x = torch.cat(samples)
    emp = x.T @ x / x.shape[0]
    # Snapshots 150 steps apart: the slowest mode decays like sqrt(mu)^t or
    # (1 - eps lambda_min / (1 - mu))^t, both below 1e-6 over 150 steps, so n = chains * 4
    # independent draws; 5 standard errors as in test_discrete_covariance_matches_simulation.
    atol = 5 * math.sqrt(2 / x.shape[0]) * float(sigma.diagonal().max())
    assert_close(emp, sigma, rtol=0, atol=atol)
    # and it is not the continuous-time answer, which is off by more than that here
    cont = sgd_bayes.stationary_covariance(A2, C2, eps=eps, batch_size=S, momentum=mu)
    assert float((cont - sigma).abs().max()) > atol


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


def test_unstable_learning_rate_is_named() -> None:
    A2, C2 = _quadratic_2d()
    lam_max = float(torch.linalg.eigvalsh(A2).max())
    eps = 2.5 / lam_max  # eps lambda_max = 2.5 >= 2: constant SGD diverges
    with pytest.raises(ValueError, match="eps"):
        sgd_bayes.stationary_covariance(A2, C2, eps=eps, batch_size=1, discrete=True)
    # the Ornstein-Uhlenbeck process itself is stable, so the continuous form only warns
    with pytest.warns(RuntimeWarning, match="eps"):
        sgd_bayes.stationary_covariance(A2, C2, eps=eps, batch_size=1)
    # heavy ball: the region grows to eps lambda_max < 2 (1 + mu), so mu = 0.5 is stable
    sgd_bayes.stationary_covariance(A2, C2, eps=eps, batch_size=1, momentum=0.5, discrete=True)


def test_eps_as_a_zero_dim_tensor() -> None:
    A2, C2 = _quadratic_2d()
    as_float = sgd_bayes.stationary_covariance(A2, C2, eps=0.1, batch_size=2)
    as_tensor = sgd_bayes.stationary_covariance(A2, C2, eps=torch.tensor(0.1), batch_size=2)
    assert_close(as_tensor, as_float, rtol=0, atol=0)
    with pytest.raises(TypeError, match="eps"):
        sgd_bayes.stationary_covariance(A2, C2, eps=torch.tensor([0.1, 0.2]), batch_size=2)


def test_window_covariance_is_the_sum_over_lags() -> None:
    A2, C2 = _quadratic_2d()
    S, T, eps = 3, 25, 0.3
    sigma = sgd_bayes.stationary_covariance(A2, C2, eps=eps, batch_size=S, discrete=True)
    M = torch.eye(2) - eps * A2
    # Var(mean of T stationary iterates) = (1/T^2) [T Sigma + sum_k (T - k)(M^k Sigma + .^T)],
    # summed term by term here; the library uses the closed form of the sum
    total, Mk = T * sigma, torch.eye(2)
    for k in range(1, T):
        Mk = Mk @ M
        total = total + (T - k) * (Mk @ sigma + sigma @ Mk.T)
    window = sgd_bayes.window_covariance(A2, C2, eps=eps, batch_size=S, window=T)
    assert_close(window, total / T**2, rtol=1e-10, atol=0)  # the same sum: rounding only


def _least_squares(n: int = 40):
    X = torch.randn(n, 2) @ torch.tensor([[1.0, 0.0], [0.6, 0.5]])
    y = X @ torch.tensor([1.0, -1.0]) + torch.randn(n)
    alpha = 0.5
    theta = torch.linalg.solve(X.T @ X + alpha * torch.eye(2), X.T @ y)
    C = sgd_bayes.gradient_noise_covariance((X @ theta - y)[:, None] * X)
    return X, y, alpha, theta, C


def test_least_squares_covariance_matches_minibatch_simulation() -> None:
    X, y, alpha, theta, C = _least_squares()
    n, S, eps, chains = len(X), 2, 0.3, 4000
    exact = sgd_bayes.least_squares_covariance(X, C, eps=eps, batch_size=S, prior_precision=alpha)
    th, samples = theta.expand(chains, -1).clone(), []
    for t in range(700):
        idx = torch.randint(0, n, (chains, S))
        Xb = X[idx]
        r = (Xb @ th[:, :, None])[..., 0] - y[idx]
        th = th - eps * ((Xb * r[..., None]).mean(1) + alpha * th / n)  # minibatch SGD
        if t >= 100 and t % 150 == 99:
            samples.append(th - theta)
    x = torch.cat(samples)
    emp = x.T @ x / x.shape[0]
    # snapshots 150 steps apart decorrelate (|1 - eps lambda|^150 < 1e-3 here); 5 SE
    atol = 5 * math.sqrt(2 / x.shape[0]) * float(exact.diagonal().max())
    assert_close(emp, exact, rtol=0, atol=atol)
    # the additive-noise solution misses the multiplicative noise by more than that
    additive = sgd_bayes.stationary_covariance(
        X.T @ X / n + alpha / n * torch.eye(2), C, eps=eps, batch_size=S, discrete=True
    )
    assert float((additive - exact).abs().max()) > atol


def test_least_squares_covariance_tends_to_the_additive_one_for_large_batches() -> None:
    X, _, alpha, _, C = _least_squares()
    A = X.T @ X / len(X) + alpha / len(X) * torch.eye(2)

    def gap(S: int) -> float:
        exact = sgd_bayes.least_squares_covariance(
            X, C, eps=0.1, batch_size=S, prior_precision=alpha
        )
        additive = sgd_bayes.stationary_covariance(A, C, eps=0.1, batch_size=S, discrete=True)
        return float(torch.linalg.norm(exact - additive) / torch.linalg.norm(additive))

    # the multiplicative part is a relative O(eps tr(A) / S): a tenfold S cuts it tenfold, up
    # to its own O(1/S) feedback
    assert_close(torch.tensor(gap(10) / gap(100)), torch.tensor(10.0), rtol=0.1, atol=0)
