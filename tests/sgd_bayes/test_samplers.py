"""Tests for blrlib.sgd_bayes.samplers: replays, torch.optim.SGD, stationary covariances."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from blrlib import infer, sgd_bayes
from tests.sgd_bayes._problems import random_spd


def _problem(n: int = 60, dim: int = 2):
    X = torch.randn(n, dim) @ torch.tensor([[1.0, 0.0], [0.5, 0.7]])[:dim, :dim]
    y = X @ torch.ones(dim) + torch.randn(n)
    model = infer.BayesModel(
        nn.Linear(dim, 1, bias=False), "gaussian", prior_precision=1.0, noise_precision=2.0
    )
    return X, y, model


def _replay(model, X, y, theta0, *, eps, H, steps, seed, S, mu=0.0):
    """theta <- theta - eps_k H grad L_S + mu (theta - theta_prev), written out, same batches."""
    gen = torch.Generator().manual_seed(seed)
    theta, prev = theta0.clone(), theta0.clone()
    sizes = torch.as_tensor(S).expand(theta0.shape[0])
    n = len(X)
    for _ in range(steps):
        idx = torch.randint(0, n, (theta0.shape[0], int(sizes.max())), generator=gen)
        grads = []
        for k in range(theta0.shape[0]):
            b = idx[k, : int(sizes[k])]
            t = theta[k].clone().requires_grad_()
            loss = model.nll(t, X[b], y[b]).mean() + model.regulariser(t) / n
            grads.append(torch.autograd.grad(loss, t)[0])
        g = torch.stack(grads)
        theta, prev = theta - eps[:, None] * g @ H.T + mu * (theta - prev), theta
    return theta


def test_constant_sgd_is_torch_sgd() -> None:
    X, y, model = _problem()
    theta0 = torch.randn(1, 2)
    chains = sgd_bayes.run_chains(
        sgd_bayes.minibatch_loss(model, X, y),
        theta0,
        n_data=len(X),
        batch_size=5,
        eps=0.05,
        momentum=0.8,
        n_steps=40,
        generator=torch.Generator().manual_seed(3),
    )
    param = nn.Parameter(theta0[0].clone())
    opt = torch.optim.SGD([param], lr=0.05, momentum=0.8)
    gen = torch.Generator().manual_seed(3)
    for _ in range(40):
        b = torch.randint(0, len(X), (1, 5), generator=gen)[0]
        opt.zero_grad()
        (model.nll(param, X[b], y[b]).mean() + model.regulariser(param) / len(X)).backward()
        opt.step()
    # the same 40 heavy-ball steps, through the BLR engine in whitened coordinates
    assert_close(chains.final[0], param.detach(), rtol=0, atol=1e-12)


def test_preconditioned_chains_with_own_rates_and_batch_sizes_match_the_recursion() -> None:
    X, y, model = _problem()
    theta0 = torch.randn(3, 2)
    H = torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    eps = torch.tensor([0.01, 0.03, 0.05])
    sizes = torch.tensor([2, 7, 4])
    chains = sgd_bayes.run_chains(
        sgd_bayes.minibatch_loss(model, X, y),
        theta0,
        n_data=len(X),
        batch_size=sizes,
        eps=eps,
        preconditioner=H,
        n_steps=25,
        generator=torch.Generator().manual_seed(4),
    )
    expected = _replay(model, X, y, theta0, eps=eps, H=H, steps=25, seed=4, S=sizes)
    assert_close(chains.final, expected, rtol=0, atol=1e-12)


def test_windows_and_polyak_average() -> None:
    X, y, model = _problem()
    loss = sgd_bayes.minibatch_loss(model, X, y)
    kwargs = {"n_data": len(X), "batch_size": 5, "eps": 0.05, "n_steps": 23, "burn_in": 3}
    raw = sgd_bayes.run_chains(
        loss, torch.zeros(4, 2), generator=torch.Generator().manual_seed(0), **kwargs
    )
    win = sgd_bayes.run_chains(
        loss, torch.zeros(4, 2), window=5, generator=torch.Generator().manual_seed(0), **kwargs
    )
    assert raw.samples.shape == (20, 4, 2) and win.samples.shape == (4, 4, 2)
    assert_close(win.samples, raw.samples.reshape(4, 5, 4, 2).mean(1))
    assert_close(raw.average, raw.samples.mean(0))
    # thinning keeps every thin-th window and still averages every iterate
    thin = sgd_bayes.run_chains(
        loss, torch.zeros(4, 2), thin=3, generator=torch.Generator().manual_seed(0), **kwargs
    )
    assert_close(thin.samples, raw.samples[::3], rtol=0, atol=0)
    assert_close(thin.average, raw.average, rtol=0, atol=0)
    both = sgd_bayes.run_chains(
        loss, torch.zeros(4, 2), window=5, thin=2,
        generator=torch.Generator().manual_seed(0), **kwargs,
    )  # fmt: skip
    assert_close(both.samples, win.samples[::2], rtol=0, atol=0)


def _stationary_check(chains, sigma, n_eff):
    x = chains.samples[::50].reshape(-1, 2)
    emp = torch.cov(x.T)
    # standard error of a covariance entry <= sqrt(2 / n) max_k Sigma_kk; allow 5 of them
    assert_close(emp, sigma, rtol=0, atol=5 * math.sqrt(2 / n_eff) * float(sigma.diagonal().max()))


@pytest.mark.parametrize("case", ["sgld", "sgfs", "momentum"])
def test_stationary_covariance_of_each_sampler(case: str) -> None:
    X, y, model = _problem(n=200)
    theta = infer.fit_map(model, X, y)
    A, C = sgd_bayes.local_quadratic(model, X, y, theta)
    N, S, chains_n, steps = len(X), 10, 500, 1300
    eps = sgd_bayes.optimal_learning_rate(C, batch_size=S, n_data=N)
    kwargs: dict = {"sampler": "sgd"}
    if case == "sgld":
        kwargs = {"sampler": "sgld", "eps": eps}
        pred = sgd_bayes.stationary_covariance(
            A, C, eps=eps, batch_size=S, discrete=True,
            injected=sgd_bayes.sgld_noise(torch.eye(2), eps=eps, n_data=N),
        )  # fmt: skip
    elif case == "sgfs":
        kwargs = {"sampler": "sgfs", "eps": 2.0, "fisher": C}
        K, Q = sgd_bayes.sgfs_step(C, eps=2.0, batch_size=S, n_data=N)
        pred = sgd_bayes.stationary_covariance(
            A, C, eps=1.0, batch_size=S, preconditioner=K, injected=Q, discrete=True
        )
    else:
        kwargs = {"eps": 0.3 * eps, "momentum": 0.7}
        pred = sgd_bayes.stationary_covariance(
            A, C, eps=0.3 * eps, batch_size=S, momentum=0.7, discrete=True
        )
    chains = sgd_bayes.run_chains(
        sgd_bayes.minibatch_loss(model, X, y),
        theta.expand(chains_n, -1).clone(),
        n_data=N,
        batch_size=S,
        n_steps=steps,
        burn_in=300,
        generator=torch.Generator().manual_seed(5),
        **kwargs,
    )
    # The OU model is exact here up to C's dependence on theta (linear regression: a relative
    # O(eps) effect); snapshots 50 steps apart are close to independent, hence n_eff.
    _stationary_check(chains, pred, n_eff=chains_n * 20)


def test_local_quadratic_of_linear_regression() -> None:
    X, y, model = _problem()
    theta = torch.randn(2)
    A, C = sgd_bayes.local_quadratic(model, X, y, theta)
    N = len(X)
    assert_close(A, 2.0 * X.T @ X / N + torch.eye(2) / N)
    grads = -2.0 * (y - X @ theta)[:, None] * X + theta / N
    assert_close(C, torch.cov(grads.T, correction=0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 61}, "batch_size"),
        ({"eps": 0.0}, "eps"),
        ({"eps": torch.tensor([0.1, -0.1])}, "eps"),
        ({"momentum": 1.0}, "momentum"),
        ({"sampler": "hmc"}, "sampler"),
        ({"sampler": "sgfs"}, "fisher"),
        ({"sampler": "sgfs", "fisher": torch.eye(2), "eps": torch.ones(2)}, "eps"),
        ({"fisher": torch.eye(2)}, "fisher"),
        ({"preconditioner": -torch.eye(2)}, "preconditioner"),
        ({"burn_in": 10}, "n_steps"),
        ({"thin": 0}, "thin"),
        ({"theta0": torch.zeros(2)}, "theta0"),
    ],
)
def test_bad_input(kwargs: dict, match: str) -> None:
    X, y, model = _problem()
    args = {"theta0": torch.zeros(2, 2), "n_data": len(X), "batch_size": 5, "eps": 0.1}
    args.update({"n_steps": 10, **kwargs})
    theta0 = args.pop("theta0")
    with pytest.raises((ValueError, TypeError), match=match):
        sgd_bayes.run_chains(sgd_bayes.minibatch_loss(model, X, y), theta0, **args)


def test_a_diverging_chain_is_an_error() -> None:
    X, y, model = _problem()
    with pytest.raises(ValueError, match="non-finite"):
        sgd_bayes.run_chains(
            sgd_bayes.minibatch_loss(model, X, y),
            torch.zeros(2, 2),
            n_data=len(X),
            batch_size=5,
            eps=50.0,
            n_steps=500,
        )


def test_sgld_with_exact_gradients_samples_the_posterior() -> None:
    A, N = random_spd(3), 50
    Q = sgd_bayes.sgld_noise(torch.eye(3), eps=0.01, n_data=N)
    sigma = sgd_bayes.stationary_covariance(
        A, torch.zeros(3, 3), eps=0.01, batch_size=1, injected=Q
    )
    # continuous time: A Sigma + Sigma A = 2 I / N is solved by the posterior (N A)^-1
    assert_close(sigma, torch.linalg.inv(N * A))


def test_sgfs_limits() -> None:
    F, N, S = random_spd(3), 1000, 10
    K, Q = sgd_bayes.sgfs_step(F, eps=1e9, batch_size=S, n_data=N)
    # large eps: preconditioned SGD with step 2 S / (N + S) I_hat^-1 and no injected noise
    assert_close(K, 2 * S / (N + S) * torch.linalg.inv(F), rtol=1e-6, atol=0)
    assert float(Q.abs().max()) < 1e-9
    # small eps: Langevin, the injected noise is 2 K / N
    K, Q = sgd_bayes.sgfs_step(F, eps=1e-6, batch_size=S, n_data=N)
    assert_close(Q, 2 * K / N, rtol=1e-4, atol=0)
