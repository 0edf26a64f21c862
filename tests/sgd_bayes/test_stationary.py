"""Tests for blrlib.sgd_bayes.stationary: Lyapunov solutions against simulation and each other."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from blrlib import sgd_bayes
from tests.sgd_bayes._problems import quadratic_2d, random_spd


def test_discrete_covariance_matches_simulation() -> None:
    A2, C2 = quadratic_2d()
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
    A, C = random_spd(4), random_spd(4)
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


def _kron_lyapunov(M: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """Solve M X + X M^T = R by the Kronecker-sum linear system: a reference independent of
    the Bartels-Stewart solver that stationary_covariance calls."""
    P = M.shape[0]
    eye = torch.eye(P)
    op = torch.kron(M, eye) + torch.kron(eye, M)  # row-major vec(M X + X M^T)
    return torch.linalg.solve(op, R.reshape(-1)).reshape(P, P)


def test_momentum_rescales_the_learning_rate_in_continuous_time() -> None:
    A, C = random_spd(3), random_spd(3)
    eps, mu, S = 0.01, 0.9, 2
    with_mu = sgd_bayes.stationary_covariance(A, C, eps=eps, batch_size=S, momentum=mu)
    # plain SGD at eps / (1 - mu): A Sigma + Sigma A = (eps / ((1 - mu) S)) C, solved by vec
    reference = _kron_lyapunov(A, eps / ((1 - mu) * S) * C)
    # two exact solutions of the same 3x3 equation (condition 10): rounding only
    assert_close(with_mu, reference, rtol=1e-10, atol=1e-14)


def test_discrete_momentum_covariance_matches_simulation() -> None:
    A2, C2 = quadratic_2d()
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


def test_unstable_learning_rate_is_named() -> None:
    A2, C2 = quadratic_2d()
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
    A2, C2 = quadratic_2d()
    as_float = sgd_bayes.stationary_covariance(A2, C2, eps=0.1, batch_size=2)
    as_tensor = sgd_bayes.stationary_covariance(A2, C2, eps=torch.tensor(0.1), batch_size=2)
    assert_close(as_tensor, as_float, rtol=0, atol=0)
    with pytest.raises(TypeError, match="eps"):
        sgd_bayes.stationary_covariance(A2, C2, eps=torch.tensor([0.1, 0.2]), batch_size=2)


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


def _stationary(**changes: object) -> torch.Tensor:
    """stationary_covariance on the 2-D quadratic at eps 0.1, batch 1, with ``changes``; the
    strings "not_sym" and "indefinite" stand for such 2 x 2 matrices."""
    A, C = quadratic_2d()
    bad = {"not_sym": torch.tensor([[1.0, 0.5], [0.0, 1.0]]),
           "indefinite": torch.tensor([[1.0, 0.0], [0.0, -1.0]])}  # fmt: skip
    args = {"A": A, "C": C, "eps": 0.1, "batch_size": 1}
    args.update({k: bad.get(v, v) if isinstance(v, str) else v for k, v in changes.items()})
    return sgd_bayes.stationary_covariance(args.pop("A"), args.pop("C"), **args)


@pytest.mark.parametrize(
    ("error", "name", "changes"),
    [
        (ValueError, "A", {"A": "not_sym"}),
        (ValueError, "A", {"A": "indefinite"}),
        (TypeError, "A", {"A": [[1.0]]}),
        (ValueError, "C", {"C": "indefinite"}),
        (ValueError, "C", {"C": torch.eye(3, dtype=torch.float64)}),
        (ValueError, "eps", {"eps": -0.1}),
        (ValueError, "eps", {"eps": 5.0, "discrete": True}),  # outside the stable region
        (TypeError, "batch_size", {"batch_size": 1.5}),
        (ValueError, "batch_size", {"batch_size": 0}),
        (ValueError, "preconditioner", {"preconditioner": "indefinite"}),
    ],
)
def test_bad_inputs_name_the_argument(error: type, name: str, changes: dict) -> None:
    with pytest.raises(error, match=name):
        _stationary(**changes)
