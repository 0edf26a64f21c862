"""Variational EM with constant SGD: learning a prior precision (Mandt et al. 2017).

    from blrlib import sgd_bayes
    alphas = sgd_bayes.vem_prior_precision(X, y, noise_precision=1.0, alpha0=1.0,
                                           batch_size=10, n_rounds=20, n_steps=300)
    sgd_bayes.evidence_prior_precision(X, y, noise_precision=1.0)   # the exact answer

The E-step approximates p(theta | y, alpha) by the stationary distribution of constant SGD
with the KL-optimal learning rate (:func:`blrlib.sgd_bayes.optimal_learning_rate`); the M-step
maximises E_q[log p(theta | alpha)] over alpha, which for the prior N(0, alpha^-1 I) is
alpha = P / E_q[|theta|^2]. With the exact posterior as q this is EM, whose fixed point is the
maximiser of the evidence p(y | alpha) (type-II maximum likelihood, MacKay 1992).

Mandt et al. (2017) take gradient steps on the hyperparameters instead of maximising. Here
``hyper_lr`` = rho < 1 gives such a step: the natural-gradient step on the prior variance
v = 1 / alpha, v <- (1 - rho) v + rho E_q|theta|^2 / P (the gradient of E_q[log p(theta |
alpha)] in v, preconditioned by its Fisher information P / (2 v^2)). Its fixed point is that
of the closed-form M-step, which is the step rho = 1.

Derived in :ref:`sgd-vem`.
"""

from __future__ import annotations

import math

import scipy.optimize
import torch
from torch import Tensor, nn

from blrlib._checks import count, positive_float
from blrlib.infer.model import BayesModel
from blrlib.sgd_bayes.noise import gradient_noise_covariance, per_example_gradients
from blrlib.sgd_bayes.optimal import optimal_learning_rate
from blrlib.sgd_bayes.samplers import minibatch_loss, run_chains

__all__ = ["evidence_prior_precision", "log_evidence", "vem_prior_precision"]


def _check_data(X: object, y: object) -> tuple[Tensor, Tensor]:
    if not isinstance(X, Tensor) or not isinstance(y, Tensor):
        raise TypeError("X, y: must be torch Tensors")
    if X.dim() != 2 or y.shape != (X.shape[0],) or X.shape[0] < 2:
        raise ValueError(f"X, y: expected (N, P) and (N,), N >= 2; got {X.shape}, {y.shape}")
    if not (torch.isfinite(X).all() and torch.isfinite(y).all()):
        raise ValueError("X, y: must be finite")
    return X, y


def log_evidence(X: Tensor, y: Tensor, *, prior_precision: float, noise_precision: float) -> float:
    """log p(y | X, alpha) of Bayesian linear regression y = X theta + N(0, 1/beta), theta ~
    N(0, I / alpha): the Gaussian N(y | 0, X X^T / alpha + I / beta), computed in parameter
    space (Bishop 2006, Eq 3.86)."""
    X, y = _check_data(X, y)
    alpha = positive_float(prior_precision, "prior_precision")
    beta = positive_float(noise_precision, "noise_precision")
    N, P = X.shape
    precision = alpha * torch.eye(P, dtype=X.dtype, device=X.device) + beta * X.T @ X
    chol = torch.linalg.cholesky(precision)
    mean = beta * torch.cholesky_solve((X.T @ y)[:, None], chol)[:, 0]
    fit = beta * (y - X @ mean).square().sum() + alpha * mean.square().sum()
    logdet = 2 * chol.diagonal().log().sum()
    return float(
        0.5 * (P * math.log(alpha) + N * math.log(beta) - fit - logdet - N * math.log(2 * math.pi))
    )


def evidence_prior_precision(X: Tensor, y: Tensor, *, noise_precision: float) -> float:
    """The alpha that maximises :func:`log_evidence` (a 1-D search over log alpha)."""
    res = scipy.optimize.minimize_scalar(
        lambda a: -log_evidence(X, y, prior_precision=math.exp(a), noise_precision=noise_precision),
        bounds=(-12.0, 12.0),
        method="bounded",
        options={"xatol": 1e-8},
    )
    return math.exp(res.x)


def vem_prior_precision(
    X: Tensor,
    y: Tensor,
    *,
    noise_precision: float,
    alpha0: float,
    batch_size: int,
    n_rounds: int,
    n_steps: int,
    n_chains: int = 100,
    hyper_lr: float = 1.0,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Learn the prior precision of Bayesian linear regression by variational EM with SGD.

    Each round re-tunes eps* from the gradient noise at the chains' mean, runs ``n_steps``
    constant-SGD steps on ``n_chains`` chains (the first half discarded as burn-in) and, with
    m2 the mean |theta|^2 over the kept iterates, sets 1 / alpha <- (1 - rho) / alpha +
    rho m2 / P: alpha = P / m2 for the default rho = 1 (see the module docstring).

    Args:
        X, y: data (N, P) and targets (N,).
        noise_precision: beta of the Gaussian likelihood, known.
        alpha0: the starting prior precision, > 0.
        batch_size: S for constant SGD.
        n_rounds: EM rounds.
        n_steps: SGD steps per round, >= 2.
        n_chains: parallel chains (their iterates pool into one estimate of E_q|theta|^2).
        hyper_lr: rho in (0, 1], the M-step's natural-gradient step on 1 / alpha.
        generator: for the minibatches.

    Returns:
        alpha after each round, starting with ``alpha0`` (length n_rounds + 1).
    """
    X, y = _check_data(X, y)
    alpha = positive_float(alpha0, "alpha0")
    n_rounds, n_steps = count(n_rounds, "n_rounds"), count(n_steps, "n_steps", minimum=2)
    n_chains = count(n_chains, "n_chains")
    rho = positive_float(hyper_lr, "hyper_lr")
    if rho > 1:
        raise ValueError(f"hyper_lr must be in (0, 1]; got {hyper_lr!r}")
    N, P = X.shape
    net = nn.Linear(P, 1, bias=False, dtype=X.dtype, device=X.device)
    theta = torch.zeros(n_chains, P, dtype=X.dtype, device=X.device)
    alphas = [alpha]
    for _ in range(n_rounds):
        model = BayesModel(net, "gaussian", prior_precision=alpha, noise_precision=noise_precision)
        # C only (no Hessian): the per-example gradients of nll_n + R / N at the chains' mean
        grads = per_example_gradients(
            lambda t, model=model: model.nll(t, X, y) + model.regulariser(t) / N, theta.mean(0)
        )
        C = gradient_noise_covariance(grads)
        eps = optimal_learning_rate(C, batch_size=batch_size, n_data=N)
        chains = run_chains(
            minibatch_loss(model, X, y),
            theta,
            n_data=N,
            batch_size=batch_size,
            eps=eps,
            n_steps=n_steps,
            burn_in=n_steps // 2,
            generator=generator,
        )
        theta = chains.final
        m2 = float(chains.samples.square().sum(-1).mean())
        alpha = 1 / ((1 - rho) / alpha + rho * m2 / P)
        alphas.append(alpha)
    return alphas
