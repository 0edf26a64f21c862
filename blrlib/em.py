"""Expectation maximisation as coordinate-wise BLR steps (Khan & Rue 2023, Sec 5.2, Eq 55-56).

    from blrlib import em
    theta0 = em.GaussianMixtureEM.init(y, n_components=3, generator=torch.Generator())
    path = em.run(em.GaussianMixtureEM(), y, theta0, n_iter=20)   # thetas, log-likelihoods

q(z, theta) = q(z) N(theta | theta_t, I) (Eq 55) with the loss -log p(y, z | theta) (Eq 56):

* E-step: one BLR step with rho = 1 on q(z), a categorical family per data point, with the
  delta method at theta_t: lam <- grad_mu E_q(z)[log p(y, z | theta_t)], computed by the engine
  (``blr.step`` with the exact estimator, autograd with respect to mu = the responsibilities).
* M-step: the BLR's stationarity condition (Eq 5) for theta under the delta method,
  grad_theta E_q(z)[log p(y, z | theta)] = 0, solved in closed form by the Legendre transform:
  theta = grad A*(s), s = (1/N) sum_i E_q(z_i)[T(y_i, z_i)]. That map is the ``to_natural`` of
  the joint's family: ``GaussianMixture`` (whose mu_k = (pi_k m_k, pi_k (S_k^-1 + m_k m_k^T))
  is exactly s for a Gaussian mixture) or ``Bernoulli`` per component (tested identities).

Variants (Sec 5.2, last paragraph): ``parallel`` takes both BLR steps from the same (q_t(z),
theta_t); ``run_online`` averages minibatch statistics s <- (1 - rho_t) s + rho_t s_batch, the
BLR's rho < 1 step on the conjugate natural parameters (Eq 54), i.e. online EM (Cappe and
Moulines, 2009).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from blrlib import blr
from blrlib._checks import count, positive_float
from blrlib.families import Bernoulli, Categorical, GaussianMixture, Params

__all__ = ["BernoulliMixtureEM", "GaussianMixtureEM", "Model", "e_step", "run", "run_online"]


def e_step(log_joint: Tensor) -> Tensor:
    """Responsibilities r_ik = q(z_i = k) by one BLR step with rho = 1 (Eq 54-55).

    The natural gradient of E_q(z)[log p(y, z | theta)] = sum_ik r_ik log p(y_i, z_i = k | theta)
    with respect to mu = (r_i1, ..., r_i(K-1)) gives the logits log p(y_i, k) - log p(y_i, K):
    the engine computes it by autograd; nothing here writes the posterior down.

    Args:
        log_joint: log p(y_i, z_i = k | theta_t), shape (N, K).

    Returns:
        r, shape (N, K).
    """
    n, k = log_joint.shape
    q = Categorical(n, n_classes=k, dtype=log_joint.dtype, device=log_joint.device)
    lam = (torch.zeros(n, k - 1, dtype=log_joint.dtype, device=log_joint.device),)

    def expected_loss(mu: Params) -> Tensor:
        probs = torch.cat((mu[0], 1.0 - mu[0].sum(-1, keepdim=True)), dim=-1)
        return -(probs * log_joint.detach()).sum()

    return q.probs(blr.step(q, lam, rho=1.0, estimator="exact", expected_loss=expected_loss))


class Model(Protocol):
    """A latent-variable model p(y, z | theta) whose joint is an exponential family (Eq 56)."""

    def log_joint(self, theta: Any, y: Tensor) -> Tensor: ...  # (N, K)
    def stats(self, y: Tensor, resp: Tensor) -> tuple[Tensor, ...]: ...  # s = mean E_q[T]
    def from_stats(self, s: tuple[Tensor, ...]) -> Any: ...  # the M-step: grad A*(s)


def _check_y(y: object, dim: int | None = None) -> Tensor:
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if y.dim() != 2 or (dim is not None and y.shape[1] != dim):
        raise ValueError(f"y must have shape (N, {dim or 'D'}), got {tuple(y.shape)}")
    if not torch.isfinite(y).all():
        raise ValueError("y contains non-finite values (NaN or inf)")
    return y


@dataclass(frozen=True)
class GaussianMixtureEM:
    """A full-covariance Gaussian mixture; theta = (weights (K,), lam of ``GaussianMixture``).

    Args:
        reg_covar: added to the diagonal of every covariance in the M-step, as scikit-learn's
            ``reg_covar`` does: s2_k <- s2_k + reg_covar pi_k I, the expected statistic of data
            jittered by N(0, reg_covar I). With 0, a component that collapses onto one point
            (a singular covariance) raises ValueError.
    """

    reg_covar: float = 0.0

    @staticmethod
    def init(y: Tensor, n_components: int, *, generator: torch.Generator | None = None):
        """Equal weights, K data points as means, the data covariance for every component."""
        y = _check_y(y)
        k = count(n_components, "n_components")
        idx = torch.randperm(y.shape[0], generator=generator)[:k]
        cov = torch.cov(y.T).reshape(y.shape[1], y.shape[1]).expand(k, -1, -1)
        return GaussianMixtureEM.from_moments(torch.full((k,), 1.0 / k, dtype=y.dtype), y[idx], cov)

    @staticmethod
    def from_moments(weights: Tensor, means: Tensor, covs: Tensor):
        """theta from weights (K,), means (K, D) and covariances (K, D, D)."""
        family = GaussianMixture(weights, means.shape[-1], dtype=means.dtype, device=means.device)
        return family.weights, family.natural_from_moments(means, torch.linalg.inv(covs))

    @staticmethod
    def moments(theta) -> tuple[Tensor, Tensor, Tensor]:
        """(weights (K,), means (K, D), covariances (K, D, D))."""
        weights, lam = theta
        family = GaussianMixture(weights, lam[0].shape[-1], dtype=lam[0].dtype)
        means, covs = family.mean_cov(lam)
        return weights, means, covs

    def log_joint(self, theta, y: Tensor) -> Tensor:
        """log pi_k + log N(y_i | m_k, S_k^-1), shape (N, K)."""
        weights, lam = theta
        return GaussianMixture(weights, y.shape[1], dtype=y.dtype).joint_log_prob(lam, y)

    def stats(self, y: Tensor, resp: Tensor) -> tuple[Tensor, ...]:
        """s = (mean r_ik, mean r_ik y_i, mean r_ik y_i y_i^T): E_q[T(y, z)] averaged (Eq 56)."""
        n = y.shape[0]
        outer = y.unsqueeze(-1) * y.unsqueeze(-2)
        return resp.mean(0), resp.T @ y / n, torch.einsum("nk,npq->kpq", resp, outer) / n

    def from_stats(self, s: tuple[Tensor, ...]):
        """The M-step theta = grad A*(s): GaussianMixture(pi).to_natural (the inverse of Eq 27)."""
        weights, first, second = s
        if not (weights > 0).all():
            raise ValueError("a mixture component has zero responsibility (it collapsed)")
        eye = torch.eye(first.shape[-1], dtype=first.dtype, device=first.device)
        second = (
            second + positive_or_zero(self.reg_covar, "reg_covar") * weights[:, None, None] * eye
        )
        family = GaussianMixture(weights / weights.sum(), first.shape[-1], dtype=first.dtype)
        _, cov = family.mean_cov_from_expectation((first, second))
        _, info = torch.linalg.cholesky_ex(cov)
        if (info != 0).any():
            bad = torch.nonzero(info).flatten().tolist()
            raise ValueError(
                f"mixture component(s) {bad} collapsed onto too few points (singular "
                "covariance); set reg_covar > 0"
            )
        lam = family.to_natural((first, second))
        return family.weights, lam

    def log_likelihood(self, theta, y: Tensor) -> Tensor:
        """The mean log-likelihood (1/N) sum_i log p(y_i | theta)."""
        return torch.logsumexp(self.log_joint(theta, y), dim=-1).mean()


def positive_or_zero(value: float, name: str) -> float:
    """``value`` if it is a float >= 0, else TypeError or ValueError naming ``name``."""
    return 0.0 if value == 0 else positive_float(value, name)


@dataclass(frozen=True)
class BernoulliMixtureEM:
    """A mixture of K products of D Bernoullis; theta = (weights (K,), logits (K, D)).

    Args:
        smoothing: eps >= 0 in p_kd = (s_kd + eps) / (pi_k + 2 eps), with s and pi averaged
            over the N data: eps N pseudo-observations of each value, the MAP under a
            Beta(1 + eps N, 1 + eps N) prior. With 0, a pixel that is constant within a
            component gives an infinite logit and raises ValueError.
    """

    smoothing: float = 1e-3

    def log_joint(self, theta, y: Tensor) -> Tensor:
        """log pi_k + sum_d log Bernoulli(y_id | p_kd), shape (N, K)."""
        weights, logits = theta
        family = Bernoulli(y.shape[1], dtype=y.dtype)
        return weights.log() + family.log_prob((logits,), y.unsqueeze(1))

    def stats(self, y: Tensor, resp: Tensor) -> tuple[Tensor, ...]:
        """s = (mean r_ik, mean r_ik y_i)."""
        return resp.mean(0), resp.T @ y / y.shape[0]

    def from_stats(self, s: tuple[Tensor, ...]):
        """The M-step: weights = s1 and logits = Bernoulli.to_natural(p) (grad A*)."""
        weights, first = s
        if not (weights > 0).all():
            raise ValueError("a mixture component has zero responsibility (it collapsed)")
        eps = positive_or_zero(self.smoothing, "smoothing")
        probs = (first + eps) / (weights[:, None] + 2 * eps)
        logits = Bernoulli(first.shape[-1], dtype=first.dtype).to_natural((probs,))[0]
        if not torch.isfinite(logits).all():
            raise ValueError("a pixel is constant within a component; set smoothing > 0")
        return weights / weights.sum(), logits

    def log_likelihood(self, theta, y: Tensor) -> Tensor:
        """The mean log-likelihood (1/N) sum_i log p(y_i | theta)."""
        return torch.logsumexp(self.log_joint(theta, y), dim=-1).mean()


def run(model, y: Tensor, theta0, *, n_iter: int, parallel: bool = False) -> dict[str, list]:
    """Batch EM (coordinate-wise BLR steps) or the parallel variant, for ``n_iter`` passes.

    Args:
        model: a :class:`GaussianMixtureEM` or :class:`BernoulliMixtureEM`.
        y: data (N, D).
        theta0: the initial parameters.
        n_iter: the number of iterations (each one pass over the data).
        parallel: take the E-step and the M-step from the same (q_t(z), theta_t) instead of
            one after the other (q_0(z) is the E-step at theta0).

    Returns:
        ``{"theta": [theta_0, ...], "loglik": [mean log-likelihood of each theta]}``.
    """
    y = _check_y(y)
    count(n_iter, "n_iter", minimum=0)
    thetas, logliks = [theta0], [model.log_likelihood(theta0, y).item()]
    resp = e_step(model.log_joint(theta0, y))
    for _ in range(n_iter):
        if parallel:
            theta = model.from_stats(model.stats(y, resp))
            resp = e_step(model.log_joint(thetas[-1], y))
        else:
            resp = e_step(model.log_joint(thetas[-1], y)) if len(thetas) > 1 else resp
            theta = model.from_stats(model.stats(y, resp))
        thetas.append(theta)
        logliks.append(model.log_likelihood(theta, y).item())
    return {"theta": thetas, "loglik": logliks}


def run_online(
    model,
    y: Tensor,
    theta0,
    *,
    n_passes: int,
    batch_size: int,
    kappa: float = 0.6,
    generator: torch.Generator | None = None,
) -> dict[str, list]:
    """Online EM: s <- (1 - rho_t) s + rho_t s_batch with rho_t = (t + 1)^-kappa (Eq 54, rho < 1).

    Stochastic approximation in the statistics (Cappe and Moulines, 2009): with
    sum rho_t = inf and sum rho_t^2 < inf (kappa in (0.5, 1]) it reaches a fixed point of EM.

    Returns:
        ``{"theta": [...], "loglik": [...]}`` at the end of each pass (theta0 first).
    """
    y = _check_y(y)
    count(n_passes, "n_passes", minimum=0)
    batch = count(batch_size, "batch_size")
    if not 0.5 < kappa <= 1.0:
        raise ValueError(f"kappa must be in (0.5, 1]; got {kappa!r}")
    theta, s, t = theta0, None, 0
    thetas, logliks = [theta0], [model.log_likelihood(theta0, y).item()]
    for _ in range(n_passes):
        for idx in torch.randperm(y.shape[0], generator=generator).split(batch):
            s_batch = model.stats(y[idx], e_step(model.log_joint(theta, y[idx])))
            rho = (t + 1.0) ** -kappa
            if s is None:
                s = s_batch
            else:
                s = tuple((1 - rho) * a + rho * b for a, b in zip(s, s_batch, strict=True))
            theta, t = model.from_stats(s), t + 1
        thetas.append(theta)
        logliks.append(model.log_likelihood(theta, y).item())
    return {"theta": thetas, "loglik": logliks}
