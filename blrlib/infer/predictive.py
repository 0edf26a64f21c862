"""Posterior predictives p(y | x, D) = E_q[p(y | x, theta)]: Monte Carlo, probit, linearised.

    from blrlib.infer import laplace, predict
    q = laplace(bm, X, y, theta_map)
    p_mc = predict(bm, X_test, q, method="mc", n_samples=1000)  # mean of sigmoid(f_theta_s)
    p_probit = predict(bm, X_test, q, method="probit")  # sigmoid(m_f / sqrt(1 + pi v_f / 8))
    p_glm = predict(bm, X_test, q, method="linearised_mc")  # MC over the linearised model

Monte Carlo averages the likelihood's *probabilities* over draws theta_s ~ q; averaging logits
instead would return the plug-in prediction at the mean and lose the uncertainty.
The probit approximation (MacKay, 1992) linearises f around the mean of q, which makes f
Gaussian, N(m_f, v_f) with v_f = g^T Sigma g, and replaces the sigmoid by a probit of the same
slope at zero, whose Gaussian integral is again a probit:
int sigmoid(f) N(f | m_f, v_f) df ~ sigmoid(m_f / sqrt(1 + pi v_f / 8)).

Derived in :ref:`primer-probit`.
"""

from __future__ import annotations

import math
from enum import Enum

import torch
from torch import Tensor
from torch.func import jacrev

from blrlib import _checks
from blrlib.estimators import parse_option
from blrlib.infer.gaussian import GaussianPosterior
from blrlib.infer.model import BayesModel, Likelihood

__all__ = ["Method", "linearised", "mc", "predict", "probit", "probit_multiclass"]

Predictive = Tensor | tuple[Tensor, Tensor]

_CHUNK = 256  # draws evaluated at once by vmap: bounds memory at 256 * N * K outputs


class Method(str, Enum):
    """How :func:`predict` computes E_q[p(y | x, theta)]."""

    MC = "mc"  # sample theta ~ q and average the probabilities
    PROBIT = "probit"  # linearise f, then the probit approximation (closed form)
    LINEARISED_MC = "linearised_mc"  # sample the linearised, Gaussian f and average


def _average(bm: BayesModel, f: Tensor) -> Predictive:
    """The predictive from output draws f of shape (S, N) or (S, N, K)."""
    if bm.likelihood is Likelihood.BERNOULLI:
        return torch.sigmoid(f).mean(0)
    if bm.likelihood is Likelihood.CATEGORICAL:
        return torch.softmax(f, dim=-1).mean(0)
    # the mixture of the S Gaussians N(f_s, 1/tau): its mean and its (population) variance
    return f.mean(0), f.var(0, correction=0) + 1.0 / bm.noise_precision


def mc(bm: BayesModel, X: Tensor, thetas: Tensor) -> Predictive:
    """The Monte Carlo predictive (1/S) sum_s p(y | x, theta_s).

    Args:
        bm: the model.
        X: inputs, shape (N, ...).
        thetas: draws theta_s from the posterior approximation, shape (S, P).

    Returns:
        ``bernoulli``: the mean probability of y = 1, shape (N,); ``categorical``: the mean class
        probabilities (N, K); ``gaussian``: the predictive mean (N,) and variance (N,), the
        variance of the outputs across draws plus the noise variance 1/tau.

    Raises:
        ValueError: ``thetas`` is not of shape (S, P) with S >= 1.
    """
    if not isinstance(thetas, Tensor) or thetas.dim() != 2 or thetas.shape[1] != bm.dim:
        got = tuple(thetas.shape) if isinstance(thetas, Tensor) else type(thetas).__name__
        raise ValueError(f"thetas must have shape (S, {bm.dim}); got {got}")
    if thetas.shape[0] < 1:
        raise ValueError("thetas: needs at least one draw")
    f = torch.vmap(lambda t: bm.forward(t, X), chunk_size=_CHUNK)(thetas.detach())
    return _average(bm, f)


def _check_mean_var(mean: Tensor, var: Tensor) -> None:
    for name, value in (("mean", mean), ("var", var)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a tensor; got {type(value).__name__}")
    if mean.shape != var.shape:
        raise ValueError(
            f"var must have the shape of mean {tuple(mean.shape)}; got {tuple(var.shape)}"
        )
    if (var < 0).any():
        raise ValueError("var must be non-negative")


def probit(mean: Tensor, var: Tensor) -> Tensor:
    """Probit approximation: E[sigmoid(f)] ~ sigmoid(mean / sqrt(1 + pi var / 8)).

    The approximation of MacKay (1992), as in the lecture: sigmoid(a) ~ Phi(lambda a) with
    lambda^2 = pi / 8 (equal slopes at 0), and int Phi(lambda f) N(f | m, v) df =
    Phi(lambda m / sqrt(1 + lambda^2 v)) ~ sigmoid(m / sqrt(1 + pi v / 8)). Elementwise.

    Args:
        mean: means of the logits, any shape.
        var: their variances, the same shape, non-negative (f ~ N(mean, var)).

    Returns:
        The approximate probabilities, the shape of ``mean``.

    Raises:
        TypeError: an argument is not a tensor.
        ValueError: ``var`` has another shape than ``mean`` or negative entries.
    """
    _check_mean_var(mean, var)
    return torch.sigmoid(mean / torch.sqrt(1 + math.pi * var / 8))


def probit_multiclass(mean: Tensor, var: Tensor) -> Tensor:
    """softmax(mean / sqrt(1 + pi var / 8)): a mean-field extension of the probit to K classes.

    This is a heuristic, not a derived approximation: each logit is shrunk by its own variance,
    as the binary probit does, and the result is renormalised by the softmax. It neglects the
    covariances between the K logits of an example (only their variances enter), and the
    softmax's coupling of the classes, so for K = 2 it does not reduce to :func:`probit` of the
    logit difference. It is exact only when var = 0.

    Args:
        mean: means of the logits, shape (N, K).
        var: their marginal variances, shape (N, K), non-negative.

    Returns:
        Class probabilities, shape (N, K), each row summing to one.

    Raises:
        TypeError: an argument is not a tensor.
        ValueError: ``mean`` is not 2-D, ``var`` has another shape, or negative entries.
    """
    _check_mean_var(mean, var)
    if mean.dim() != 2:
        raise ValueError(f"mean must have shape (N, K); got {tuple(mean.shape)}")
    return torch.softmax(mean / torch.sqrt(1 + math.pi * var / 8), dim=-1)


def _check_q(bm: BayesModel, q: GaussianPosterior) -> None:
    if not isinstance(q, GaussianPosterior):
        raise TypeError(f"q must be a GaussianPosterior; got {type(q).__name__}")
    if q.family.dim != bm.dim:
        raise ValueError(f"q must be a Gaussian over {bm.dim} parameters; got {q.family.dim}")


def _jacobian(bm: BayesModel, X: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
    """The outputs f (N,) or (N, K) at theta, and J = d f / d theta, (N, P) or (N, K, P)."""
    J = jacrev(lambda t: bm.forward(t, X))(theta)
    return bm.forward(theta, X).detach(), J.detach()


def linearised(bm: BayesModel, X: Tensor, q: GaussianPosterior) -> tuple[Tensor, Tensor]:
    """Mean and variance of the outputs under the linearised model f(theta) ~ f(m) + J (theta - m).

    With q = N(m, Sigma), each output is Gaussian with mean f(m) and variance g^T Sigma g,
    g = d f / d theta at m (for a diagonal q, sum_p g_p^2 Sigma_pp). This is the Gaussian over f
    that :func:`probit` integrates against (MacKay, 1992); for a linear model it is exact.

    Args:
        bm: the model.
        X: inputs, shape (N, ...).
        q: a full or diagonal Gaussian over the P parameters.

    Returns:
        (f_mean, f_var), each (N,) for one output per example, or (N, K) per class.

    Raises:
        TypeError: ``q`` is not a :class:`GaussianPosterior`.
        ValueError: ``q`` has the wrong dimension.
    """
    _check_q(bm, q)
    mean, cov = q.mean, q.cov
    f_mean, J = _jacobian(bm, X, mean)
    if q.diagonal:
        f_var = (J * J * cov).sum(-1)
    else:
        f_var = torch.einsum("...p,pq,...q->...", J, cov, J)
    return f_mean, f_var


def predict(
    bm: BayesModel,
    X: Tensor,
    q: GaussianPosterior,
    *,
    method: Method | str = Method.MC,
    n_samples: int = 1000,
    generator: torch.Generator | None = None,
) -> Predictive:
    """The predictive E_q[p(y | x, theta)] of a Gaussian posterior approximation q.

    Methods:

    * ``"mc"``: :func:`mc` with ``n_samples`` draws theta_s ~ q.
    * ``"probit"``: :func:`linearised`, then :func:`probit` (bernoulli) or
      :func:`probit_multiclass` (categorical); for gaussian, (f_mean, f_var + 1/tau), the exact
      predictive of the linearised model.
    * ``"linearised_mc"``: draws f_s = f(m) + J (theta_s - m), theta_s ~ q, of the linearised
      model (keeping the covariances between classes) and averages probabilities as in
      :func:`mc`.

    Args:
        bm: the model.
        X: inputs, shape (N, ...).
        q: a full or diagonal Gaussian over the P parameters (e.g. from
            :func:`blrlib.infer.laplace`).
        method: ``"mc"``, ``"probit"`` or ``"linearised_mc"``.
        n_samples: draws for the Monte Carlo methods (ignored by ``"probit"``), positive.
        generator: random generator for the draws.

    Returns:
        As :func:`mc`: probabilities (N,) or (N, K), or (mean, variance) for gaussian.

    Raises:
        TypeError: ``q`` is not a :class:`GaussianPosterior`.
        ValueError: unknown ``method``, non-positive ``n_samples``, ``q`` of the wrong dimension.
    """
    method = parse_option(method, Method, "method")
    n_samples = _checks.count(n_samples, "n_samples")
    _check_q(bm, q)
    if method is Method.MC:
        return mc(bm, X, q.sample(n_samples, generator=generator))
    if method is Method.PROBIT:
        f_mean, f_var = linearised(bm, X, q)
        if bm.likelihood is Likelihood.BERNOULLI:
            return probit(f_mean, f_var)
        if bm.likelihood is Likelihood.CATEGORICAL:
            return probit_multiclass(f_mean, f_var)
        return f_mean, f_var + 1.0 / bm.noise_precision
    mean = q.mean
    f_mean, J = _jacobian(bm, X, mean)
    shifts = q.sample(n_samples, generator=generator) - mean  # (S, P)
    f = f_mean + torch.einsum("...p,sp->s...", J, shifts)
    return _average(bm, f)
