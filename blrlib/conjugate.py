"""Conjugate Bayes as one step of the Bayesian learning rule (Khan & Rue 2023, Sec 5.1, Eq 54).

    import torch
    from blrlib import conjugate, families
    q = families.Beta(1, dtype=torch.float64)
    prior = q.natural_from_shapes(torch.tensor([2.0]), torch.tensor([2.0]))
    y = torch.tensor([[1.0], [0.0], [1.0]])
    post = conjugate.posterior(q, prior, conjugate.BernoulliLikelihood(), y)  # Beta(4, 3)

A likelihood here is written as a function of the sufficient statistics T(theta) of the
conjugate family: log p(y_i | theta) = <lam~_i(y_i), T(theta)> + c(y_i) is affine in T(theta),
so the same formula evaluated at mu = E_q[T(theta)] is E_q[log p(y_i | theta)] exactly.
The site terms lam~_i(y_i) are never written down: the engine obtains them as the natural
gradient grad_mu E_q[log p(y_i | theta)] by automatic differentiation (Eq 54), and the
posterior is one BLR step with rho = 1 from any lam, lam* = lam_0 + sum_i lam~_i(y_i).

Derived in :ref:`conj-bayes`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from blrlib import blr
from blrlib.estimators import natural_gradient
from blrlib.families import (
    Beta,
    Dirichlet,
    ExponentialFamily,
    Gamma,
    Gaussian,
    NormalGamma,
    NormalWishart,
    Params,
)

__all__ = [
    "BernoulliLikelihood",
    "CategoricalLikelihood",
    "GaussianLikelihood",
    "Likelihood",
    "NormalGammaLikelihood",
    "NormalWishartLikelihood",
    "PoissonLikelihood",
    "log_marginal_likelihood",
    "online",
    "posterior",
    "site_terms",
]


def _check_data(y: Tensor, family: ExponentialFamily, shape: tuple[int, ...]) -> Tensor:
    """y of shape (N,) + ``shape``, N >= 1, in the family's dtype.

    The convention of the Conventions page: an observation that is one number may be passed as
    (N,) or (N, 1), whichever ``shape`` (``()`` or ``(1,)``) the likelihood reads.
    """
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if shape == (1,) and y.dim() == 1:
        y = y[:, None]
    elif shape == () and y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dim() > 0 and y.shape[0] == 0:
        raise ValueError(f"y must hold at least one observation; got shape {tuple(y.shape)}")
    if y.is_floating_point() and y.dtype != family.dtype:
        raise TypeError(
            f"y has dtype {y.dtype} but the family has {family.dtype}; convert y "
            f"(y.to({family.dtype}))"
        )
    if tuple(y.shape[1:]) != shape or y.dim() != len(shape) + 1:
        raise ValueError(
            f"y must have shape (N, {', '.join(map(str, shape))}), got {tuple(y.shape)}"
            if shape
            else f"y must have shape (N,), got {tuple(y.shape)}"
        )
    y = y.to(dtype=family.dtype, device=family.device)
    if not torch.isfinite(y).all():
        raise ValueError("y contains non-finite values (NaN or inf)")
    return y


class Likelihood:
    """A likelihood p(y_i | theta) conjugate to an exponential family (Sec 5.1).

    Subclasses give ``family_type`` and :meth:`log_prob_stats`, the log-likelihood of each
    observation as an affine function of the family's sufficient statistics.
    """

    family_type: type[ExponentialFamily] | tuple[type[ExponentialFamily], ...]

    def check(self, family: ExponentialFamily, y: Tensor) -> Tensor:
        """Validate ``family`` and ``y``; return ``y`` in the family's dtype.

        Raises:
            TypeError: the family is not conjugate to this likelihood, or ``y`` is no tensor.
            ValueError: ``y`` has the wrong shape, non-finite entries or values off the support.
        """
        if not isinstance(family, self.family_type):
            raise TypeError(
                f"family: {type(self).__name__} is conjugate to {self.family_type}, "
                f"got {type(family).__name__}"
            )
        return self._check_y(family, y)

    def _check_y(self, family: ExponentialFamily, y: Tensor) -> Tensor:
        return _check_data(y, family, (family.dim,))

    def log_prob_stats(self, y: Tensor, stats: Params) -> Tensor:
        """log p(y_i | theta) for each i, given stats = T(theta) (or mu = E_q[T]); shape (N,)."""
        raise NotImplementedError

    def subset(self, index: slice) -> Likelihood:
        """The likelihood of the observations ``y[index]`` (the same object unless it holds
        per-observation inputs, such as a design matrix)."""
        return self


@dataclass(frozen=True)
class BernoulliLikelihood(Likelihood):
    """y_ip in {0, 1} ~ Bernoulli(theta_p), conjugate to :class:`~blrlib.families.Beta`."""

    family_type = Beta

    def _check_y(self, family: ExponentialFamily, y: Tensor) -> Tensor:
        y = _check_data(y, family, (family.dim,))
        if not ((y == 0) | (y == 1)).all():
            raise ValueError("y: Bernoulli observations must be 0 or 1")
        return y

    def log_prob_stats(self, y: Tensor, stats: Params) -> Tensor:
        """y log theta + (1 - y) log(1 - theta), summed over p."""
        return (y * stats[0] + (1.0 - y) * stats[1]).sum(-1)


@dataclass(frozen=True)
class PoissonLikelihood(Likelihood):
    """y_ip in {0, 1, ...} ~ Poisson(theta_p), conjugate to :class:`~blrlib.families.Gamma`."""

    family_type = Gamma

    def _check_y(self, family: ExponentialFamily, y: Tensor) -> Tensor:
        y = _check_data(y, family, (family.dim,))
        if not ((y >= 0) & (y == y.round())).all():
            raise ValueError("y: Poisson observations must be non-negative integers")
        return y

    def log_prob_stats(self, y: Tensor, stats: Params) -> Tensor:
        """y log theta - theta - log y!, summed over p."""
        return (y * stats[0] - stats[1] - torch.lgamma(y + 1.0)).sum(-1)


@dataclass(frozen=True)
class CategoricalLikelihood(Likelihood):
    """y_i in {0, ..., K - 1} ~ Categorical(theta), conjugate to the Dirichlet."""

    family_type = Dirichlet

    def _check_y(self, family: ExponentialFamily, y: Tensor) -> Tensor:
        y = _check_data(y, family, ())
        if not ((y >= 0) & (y < family.dim) & (y == y.round())).all():
            raise ValueError(f"y: categorical observations must be integers in [0, {family.dim})")
        return y

    def log_prob_stats(self, y: Tensor, stats: Params) -> Tensor:
        """log theta_{y_i}."""
        return stats[0][..., y.long()]


@dataclass(frozen=True)
class GaussianLikelihood(Likelihood):
    """y_i ~ N(x_i^T theta, sigma_i^2) with known noise, conjugate to the Gaussian family.

    With ``design`` None, y_i (P,) ~ N(theta, sigma^2 I) (the Normal-Normal model); with a
    design matrix X (N, P), y_i is a scalar (Bayesian linear regression; a Gaussian process
    and a linear-Gaussian state-space model are this with a selection or observation matrix).

    Args:
        noise_var: sigma^2, a positive float or a positive tensor (N,).
        design: X, shape (N, P), or None.
    """

    noise_var: float | Tensor
    design: Tensor | None = None

    family_type = Gaussian

    def _check_y(self, family: ExponentialFamily, y: Tensor) -> Tensor:
        noise = torch.as_tensor(self.noise_var, dtype=family.dtype)
        if not (torch.isfinite(noise).all() and (noise > 0).all()):
            raise ValueError(f"noise_var must be finite and positive, got {self.noise_var!r}")
        if self.design is None:
            return _check_data(y, family, (family.dim,))
        y = _check_data(y, family, ())
        if tuple(self.design.shape) != (y.shape[0], family.dim):
            raise ValueError(
                f"design must have shape ({y.shape[0]}, {family.dim}), got "
                f"{tuple(self.design.shape)}"
            )
        if not torch.isfinite(self.design).all():
            raise ValueError("design contains non-finite values (NaN or inf)")
        return y

    def subset(self, index: slice) -> GaussianLikelihood:
        """The rows ``index`` of the design matrix and of a per-observation noise variance."""
        noise = self.noise_var
        if isinstance(noise, Tensor) and noise.dim() > 0:
            noise = noise[index]
        design = None if self.design is None else self.design[index]
        return replace(self, noise_var=noise, design=design)

    def log_prob_stats(self, y: Tensor, stats: Params) -> Tensor:
        """-(y^2 - 2 y x^T theta + x^T theta theta^T x) / (2 sigma^2) - log(2 pi sigma^2) / 2."""
        var = torch.as_tensor(self.noise_var, dtype=y.dtype, device=y.device)
        first, second = stats
        if self.design is None:
            quad = (y**2).sum(-1) - 2.0 * (y * first).sum(-1) + torch.diagonal(second).sum()
            dim = y.shape[-1]
        else:
            x = self.design.to(dtype=y.dtype, device=y.device)
            quad = y**2 - 2.0 * y * (x @ first) + ((x @ second) * x).sum(-1)
            dim = 1
        return -0.5 * quad / var - 0.5 * dim * torch.log(2 * math.pi * var)


@dataclass(frozen=True)
class NormalGammaLikelihood(Likelihood):
    """y_id ~ N(m_d, 1 / tau_d), conjugate to :class:`~blrlib.families.NormalGamma`."""

    family_type = NormalGamma

    def _check_y(self, family: ExponentialFamily, y: Tensor) -> Tensor:
        return _check_data(y, family, (family.dim // 2,))

    def log_prob_stats(self, y: Tensor, stats: Params) -> Tensor:
        """1/2 log tau - tau (y - m)^2 / 2 - 1/2 log(2 pi), summed over d."""
        tau_m, tau_m2, tau, log_tau = stats
        quad = y**2 * tau - 2.0 * y * tau_m + tau_m2
        return (0.5 * log_tau - 0.5 * quad - 0.5 * math.log(2 * math.pi)).sum(-1)


@dataclass(frozen=True)
class NormalWishartLikelihood(Likelihood):
    """y_i ~ N(m, Lambda^-1) in R^D, conjugate to :class:`~blrlib.families.NormalWishart`."""

    family_type = NormalWishart

    def _check_y(self, family: ExponentialFamily, y: Tensor) -> Tensor:
        return _check_data(y, family, (family.d,))

    def log_prob_stats(self, y: Tensor, stats: Params) -> Tensor:
        """1/2 log|L| - (y^T L y - 2 y^T L m + m^T L m) / 2 - D/2 log(2 pi), with stats = T."""
        prec_m, m_prec_m, prec, logdet = stats
        quad = ((y @ prec) * y).sum(-1) - 2.0 * y @ prec_m + m_prec_m[0]
        return 0.5 * logdet[0] - 0.5 * quad - 0.5 * y.shape[-1] * math.log(2 * math.pi)


def posterior(
    family: ExponentialFamily,
    prior: Params,
    likelihood: Likelihood,
    y: Tensor,
    *,
    rho: float = 1.0,
    lam: Params | None = None,
) -> Params:
    """One BLR step towards the posterior: lam <- (1 - rho) lam + rho (lam_0 - grad_mu E_q[loss]).

    Implements Eq 54 of Khan & Rue (2023): with rho = 1 the step lands on the exact posterior
    lam* = lam_0 + sum_i grad_mu E_q[log p(y_i | theta)] from any ``lam``; with rho < 1 the
    error lam_t - lam* shrinks by exactly (1 - rho) per step, since the natural gradient of a
    conjugate likelihood does not depend on q.

    Args:
        family: the conjugate family (e.g. Beta for Bernoulli data).
        prior: the prior's natural parameters lam_0.
        likelihood: the conjugate likelihood.
        y: the data, shape (N, ...) as the likelihood documents.
        rho: the learning rate, in (0, 1].
        lam: the current q (the prior when None).

    Returns:
        The natural parameters after the step.

    Raises:
        TypeError, ValueError: a non-conjugate family, bad data, a prior outside the natural
            domain (e.g. a non-positive Beta shape), or rho outside (0, 1].
    """
    y = likelihood.check(family, y)
    family.check_natural(prior, "prior")
    lam = prior if lam is None else lam

    def expected_loss(mu: Params) -> Tensor:
        return -likelihood.log_prob_stats(y, mu).sum()

    return blr.step(
        family, lam, rho=rho, prior=prior, estimator="exact", expected_loss=expected_loss
    )


def online(
    family: ExponentialFamily,
    prior: Params,
    likelihood: Likelihood,
    y: Tensor,
    *,
    rho: float = 1.0,
) -> list[Params]:
    """Online learning by the BLR: one step per observation, in the order of ``y``.

    Implements the online form at the end of Sec 5.4 of Khan & Rue (2023),
    q_(t+1) = argmin_q E_q[-log p(y_t | theta)] + KL(q || q_t) / rho (the exponential-weights
    update), whose minimiser is q_(t+1) ~ q_t p(y_t | theta)^rho: for a conjugate likelihood,
    lam_(t+1) = lam_t + rho lam~_t(y_t), which is :func:`posterior` with q_t as the prior.
    With rho = 1 it is sequential Bayes and lam_N is the batch posterior; for Bayesian linear
    regression the mean of lam_t is the ridge solution on the first t observations, the
    forecaster of Azoury and Warmuth (2001).

    Args:
        family, prior, likelihood, y: as in :func:`posterior`.
        rho: the weight of each observation, in (0, 1].

    Returns:
        [lam_0 = prior, lam_1, ..., lam_N].

    Raises:
        TypeError, ValueError: as :func:`posterior`.
    """
    y = likelihood.check(family, y)
    family.check_natural(prior, "prior")
    lams = [prior]
    for t in range(y.shape[0]):
        step = slice(t, t + 1)
        lams.append(posterior(family, lams[-1], likelihood.subset(step), y[step], rho=rho))
    return lams


def site_terms(
    family: ExponentialFamily, lam: Params, likelihood: Likelihood, y: Tensor
) -> list[Params]:
    """The site terms lam~_i(y_i) = grad_mu E_q[log p(y_i | theta)], one per observation (Eq 54).

    Computed by the engine's exact estimator (autograd with respect to mu); for a conjugate
    likelihood they do not depend on ``lam``.
    """
    y = likelihood.check(family, y)
    family.check_natural(lam, "lam")

    def site(i: int) -> Params:
        def expected_loss(mu: Params) -> Tensor:
            return -likelihood.log_prob_stats(y, mu)[i]

        grad = natural_gradient(family, lam, estimator="exact", expected_loss=expected_loss)
        return tuple(-g for g in grad)

    return [site(i) for i in range(y.shape[0])]


def log_marginal_likelihood(
    family: ExponentialFamily, prior: Params, post: Params, likelihood: Likelihood, y: Tensor
) -> Tensor:
    """log p(y) = E_q[log p(y | theta)] - KL(q || p(theta)) at the exact posterior q (Eq 2).

    The Bayes objective of Eq 2 equals -log p(y) at its minimiser, the posterior, so the
    evidence lower bound is tight there; at any other q this is a lower bound.
    """
    y = likelihood.check(family, y)
    family.check_natural(post, "post")
    family.check_natural(prior, "prior")
    mu = family.to_expectation(post)
    return likelihood.log_prob_stats(y, mu).sum() - family.kl(post, prior)
