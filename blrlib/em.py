"""Expectation maximisation as coordinate-wise BLR steps (Khan & Rue 2023, Sec 5.2, Eq 55-56).

    from blrlib import em
    model = em.GaussianMixtureEM()
    theta0 = model.init(y, n_components=3, generator=torch.Generator().manual_seed(0))
    path = em.run(model, y, theta0, n_iter=100, tol=1e-10)   # thetas, log-liks, converged

q(z, theta) = q(z) N(theta | theta_t, I) (Eq 55) with the loss -log p(y, z | theta), and a joint
p(y, z | theta) = h(y) exp(<T_yz(y, z), theta> - A_yz(theta)) with natural parameter theta
(Eq 56). Here theta *is* that natural parameter: for a Gaussian mixture the joint is the
``LearnedGaussianMixture`` family (with y in place of its theta), for a Bernoulli mixture a
product of Bernoullis per component with a categorical z.

* E-step: one BLR step with rho = 1 on q(z), a categorical family per data point, with the
  delta method at theta_t: lam <- grad_mu E_q(z)[log p(y, z | theta_t)] = lam~_1(y, theta_t) +
  lam_0(theta_t), the logits log p(y_i | z_i = k) + log p(z_i = k), computed by the engine
  (``blr.step``, autograd with respect to mu = the responsibilities).
* M-step: the BLR's stationarity condition (Eq 5) for theta under the delta method,
  grad_theta E_q(z)[log p(y, z | theta)] = N (s - grad A_yz(theta)) = 0, so
  theta = grad A*_yz(s), s = (1/N) sum_i E_q(z_i)[T_yz(y_i, z_i)]: the ``to_natural`` of the
  joint's family.

Variants (Sec 5.2, last paragraph): ``parallel`` takes both steps from the same (q_t(z),
theta_t). ``run_online`` averages minibatch statistics, s <- (1 - rho_t) s + rho_t s_batch
(online EM, Cappe and Moulines 2009): the rho < 1 step on the natural parameters of the
conjugate candidate of Eq 57, which are the accumulated statistics. ``average="natural"``
instead averages theta, the rho < 1 step on the EM candidate of Eq 55, whose natural parameter
is theta itself.

Derived in :ref:`conj-em`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from blrlib import _checks, blr
from blrlib._checks import count, positive_float
from blrlib.estimators import parse_option
from blrlib.families import Categorical, LearnedGaussianMixture, Params

__all__ = [
    "Average",
    "BernoulliMixtureEM",
    "GaussianMixtureEM",
    "Model",
    "e_step",
    "run",
    "run_online",
]


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

    def log_joint(self, theta: Params, y: Tensor) -> Tensor: ...  # (N, K)
    def stats(self, y: Tensor, resp: Tensor) -> Params: ...  # s = mean E_q[T_yz]
    def from_stats(self, s: Params) -> Params: ...  # the M-step: grad A*(s)
    def log_partition(self, theta: Params) -> Tensor: ...  # A_yz(theta)
    def log_likelihood(self, theta: Params, y: Tensor) -> Tensor: ...


def _check_y(y: object, dim: int | None = None) -> Tensor:
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if y.dim() != 2 or (dim is not None and y.shape[1] != dim):
        raise ValueError(f"y must have shape (N, {dim or 'D'}), got {tuple(y.shape)}")
    if y.shape[0] == 0:
        raise ValueError("y must hold at least one data point (got shape (0, D))")
    if not torch.isfinite(y).all():
        raise ValueError("y contains non-finite values (NaN or inf)")
    return y


def _check_theta(theta0: object, y: Tensor, name: str = "theta0") -> Params:
    """theta0 as a tuple of tensors whose first entry is (K, D) for y's D, in y's dtype."""
    if not isinstance(theta0, tuple | list) or not all(isinstance(t, Tensor) for t in theta0):
        raise TypeError(f"{name} must be a tuple of tensors (e.g. from model.init)")
    if not theta0 or theta0[0].dim() != 2 or theta0[0].shape[1] != y.shape[1]:
        shape = tuple(theta0[0].shape) if theta0 else ()
        raise ValueError(f"{name}[0] must have shape (K, {y.shape[1]}) for y (N, {y.shape[1]}); "
                         f"got {shape}")  # fmt: skip
    for t in theta0:
        _checks.same_float_dtype(t, name, y.dtype, "y")
    return tuple(theta0)


def _positive_or_zero(value: float, name: str) -> float:
    return 0.0 if value == 0 else positive_float(value, name)


@dataclass(frozen=True)
class GaussianMixtureEM:
    """A full-covariance Gaussian mixture; theta is the joint's natural parameter (Eq 56).

    The joint p(y, z = k | theta) = pi_k N(y | m_k, S_k^-1) is the ``LearnedGaussianMixture``
    family in y: T_yz(y, z) = (z_k y, z_k y y^T, z_c for c < K) and
    theta = (S_k m_k, -S_k / 2, eta_c), eta_c = log(pi_c / pi_K) - A_c + A_K.

    Args:
        reg_covar: added to the diagonal of every covariance in the M-step, as scikit-learn's
            ``reg_covar`` does: s2_k <- s2_k + reg_covar pi_k I, the expected statistic of data
            jittered by N(0, reg_covar I). With 0, a component that collapses onto one point
            (a singular covariance) raises ValueError.
    """

    reg_covar: float = 0.0

    @staticmethod
    def joint(theta: Params) -> LearnedGaussianMixture:
        """The family of p(y, z | theta) (Eq 56), sized from theta."""
        k, d = theta[0].shape
        return LearnedGaussianMixture(k, d, dtype=theta[0].dtype, device=theta[0].device)

    @staticmethod
    def init(y: Tensor, n_components: int, *, generator: torch.Generator | None = None):
        """Equal weights, K distinct data points as means, the data covariance for all.

        Raises:
            ValueError: ``n_components`` is larger than the number of data points.
        """
        y = _check_y(y)
        k = count(n_components, "n_components")
        if k > y.shape[0]:
            raise ValueError(
                f"n_components={k} exceeds the number of data points {y.shape[0]}: "
                "each component starts at a distinct point"
            )
        idx = torch.randperm(y.shape[0], generator=generator)[:k]
        cov = torch.cov(y.T).reshape(y.shape[1], y.shape[1]).expand(k, -1, -1)
        weights = torch.full((k,), 1.0 / k, dtype=y.dtype)
        return GaussianMixtureEM.from_moments(weights, y[idx], cov)

    @staticmethod
    def from_moments(weights: Tensor, means: Tensor, covs: Tensor) -> Params:
        """theta from weights (K,), means (K, D) and covariances (K, D, D)."""
        k, d = means.shape
        family = LearnedGaussianMixture(k, d, dtype=means.dtype, device=means.device)
        return family.natural_from_mean_precision(means, torch.linalg.inv(covs), weights)

    @staticmethod
    def moments(theta: Params) -> tuple[Tensor, Tensor, Tensor]:
        """(weights (K,), means (K, D), covariances (K, D, D))."""
        family = GaussianMixtureEM.joint(theta)
        means, covs = family.mean_cov(theta)
        return family.weights_of(theta), means, covs

    def log_joint(self, theta: Params, y: Tensor) -> Tensor:
        """lam~_1(y_i, theta) + lam_0(theta) = log N(y_i | m_k, S_k^-1) + log pi_k, (N, K)."""
        return self.joint(theta).joint_log_prob(theta, y)

    def log_joint_natural(self, theta: Params, y: Tensor) -> Tensor:
        """<T_yz(y_i, z_i = k), theta> - A_yz(theta) + log h(y_i), shape (N, K) (Eq 56).

        With T_yz(y, k) = (y e_k^T, y y^T at k, e_k without its last entry) the inner product is
        y^T eta1_k + y^T eta2_k y + eta_k (eta_K = 0), and h(y) = (2 pi)^(-D/2). The same
        numbers as :meth:`log_joint`, reached through the natural parameters only.
        """
        eta1, eta2, eta_z = theta
        eta = torch.cat((eta_z, eta_z.new_zeros(1)))
        quad = torch.einsum("np,kpq,nq->nk", y, eta2, y)
        log_h = -0.5 * y.shape[1] * math.log(2 * math.pi)
        return y @ eta1.T + quad + eta - self.log_partition(theta) + log_h

    def stats(self, y: Tensor, resp: Tensor) -> Params:
        """s = (1/N) sum_i E_q(z_i)[T_yz(y_i, z_i)]: (mean r_ik y_i, mean r_ik y_i y_i^T,
        mean r_ic for c < K), the expectation parameters of the joint (Eq 56)."""
        n = y.shape[0]
        outer = y.unsqueeze(-1) * y.unsqueeze(-2)
        second = torch.einsum("nk,npq->kpq", resp, outer) / n
        return resp.T @ y / n, second, resp.mean(0)[:-1]

    def from_stats(self, s: Params) -> Params:
        """The M-step theta = grad A*_yz(s): ``LearnedGaussianMixture.to_natural`` (Eq 56)."""
        first, second, pi_head = s
        weights = torch.cat((pi_head, 1.0 - pi_head.sum(0, keepdim=True)))
        if not (weights > 0).all():
            raise ValueError("a mixture component has zero responsibility (it collapsed)")
        eye = torch.eye(first.shape[-1], dtype=first.dtype, device=first.device)
        reg = _positive_or_zero(self.reg_covar, "reg_covar")
        second = second + reg * weights[:, None, None] * eye
        k, d = first.shape
        family = LearnedGaussianMixture(k, d, dtype=first.dtype, device=first.device)
        _, cov = family.mean_cov_from_expectation((first, second, pi_head))
        _, info = torch.linalg.cholesky_ex(cov)
        if (info != 0).any():
            bad = torch.nonzero(info).flatten().tolist()
            raise ValueError(
                f"mixture component(s) {bad} collapsed onto too few points (singular "
                "covariance); set reg_covar > 0"
            )
        return family.to_natural((first, second, pi_head))

    def log_partition(self, theta: Params) -> Tensor:
        """A_yz(theta) = log sum_k exp(eta_k + A_k(S_k m_k, -S_k / 2)), eta_K = 0."""
        return self.joint(theta).log_partition(theta)

    def log_likelihood(self, theta: Params, y: Tensor) -> Tensor:
        """The mean log-likelihood (1/N) sum_i log p(y_i | theta)."""
        return torch.logsumexp(self.log_joint(theta, y), dim=-1).mean()


@dataclass(frozen=True)
class BernoulliMixtureEM:
    """A mixture of K products of D Bernoullis; theta is the joint's natural parameter (Eq 56).

    p(y, z = k | theta) = pi_k prod_d p_kd^y_d (1 - p_kd)^(1 - y_d): T_yz(y, z) = (z_k y,
    z_c for c < K) and theta = (logit p_kd, eta_c) with eta_c = log(pi_c / pi_K) - A_c + A_K,
    A_k = sum_d log(1 + exp(logit p_kd)).

    Args:
        smoothing: eps >= 0 in p_kd = (s_kd + eps) / (r_k + 2 eps) and in the weights
            pi_k = (r_k + eps) / (1 + K eps), with s and r (the mean responsibilities)
            averaged over the N data: eps N pseudo-observations of each pixel value and of
            each component, the MAP under Beta(1 + eps N, 1 + eps N) and Dirichlet(1 + eps N)
            priors. With 0, a pixel that is constant within a component gives an infinite
            logit, and a component that no image reaches (its responsibilities underflow to
            0, as they do for far-off components in high dimension) has weight 0: both raise
            ValueError.
    """

    smoothing: float = 1e-3

    @staticmethod
    def from_moments(weights: Tensor, probs: Tensor) -> Params:
        """theta from weights (K,) and pixel probabilities (K, D) in (0, 1)."""
        logits = torch.logit(probs)
        a = F.softplus(logits).sum(-1)
        log_w = weights.log()
        return logits, (log_w[:-1] - log_w[-1]) - (a[:-1] - a[-1])

    @staticmethod
    def _logits_z(theta: Params) -> Tensor:
        logits, eta_z = theta
        return torch.cat((eta_z, eta_z.new_zeros(1))) + F.softplus(logits).sum(-1)

    @staticmethod
    def moments(theta: Params) -> tuple[Tensor, Tensor]:
        """(weights (K,), pixel probabilities (K, D))."""
        return torch.softmax(BernoulliMixtureEM._logits_z(theta), -1), torch.sigmoid(theta[0])

    def log_joint(self, theta: Params, y: Tensor) -> Tensor:
        """log pi_k + sum_d log Bernoulli(y_id | p_kd), shape (N, K)."""
        logits = theta[0]
        log_w = torch.log_softmax(self._logits_z(theta), -1)
        return log_w + y @ logits.T - F.softplus(logits).sum(-1)

    def stats(self, y: Tensor, resp: Tensor) -> Params:
        """s = (mean r_ik y_i, mean r_ic for c < K)."""
        return resp.T @ y / y.shape[0], resp.mean(0)[:-1]

    def from_stats(self, s: Params) -> Params:
        """The M-step: p_kd = (s_kd + eps) / (r_k + 2 eps), pi_k = (r_k + eps) / (1 + K eps),
        then theta (grad A* when eps = 0)."""
        first, r_head = s
        eps = _positive_or_zero(self.smoothing, "smoothing")
        r = torch.cat((r_head, 1.0 - r_head.sum(0, keepdim=True))).clamp_min(0.0)
        if eps == 0 and not (r > 0).all():
            raise ValueError(
                "a mixture component has zero responsibility (it collapsed); set smoothing > 0"
            )
        probs = (first + eps) / (r[:, None] + 2 * eps)
        theta = self.from_moments((r + eps) / (1 + len(r) * eps), probs)
        if not all(torch.isfinite(p).all() for p in theta):
            raise ValueError("a pixel is constant within a component; set smoothing > 0")
        return theta

    def log_partition(self, theta: Params) -> Tensor:
        """A_yz(theta) = log sum_k exp(eta_k + sum_d log(1 + exp(logit p_kd))), eta_K = 0."""
        return torch.logsumexp(self._logits_z(theta), -1)

    def log_likelihood(self, theta: Params, y: Tensor) -> Tensor:
        """The mean log-likelihood (1/N) sum_i log p(y_i | theta)."""
        return torch.logsumexp(self.log_joint(theta, y), dim=-1).mean()


def _check_tol(tol: float | None) -> float | None:
    return None if tol is None else positive_float(tol, "tol")


def run(
    model: Model,
    y: Tensor,
    theta0: Params,
    *,
    n_iter: int,
    parallel: bool = False,
    tol: float | None = None,
) -> dict:
    """Batch EM (coordinate-wise BLR steps) or the parallel variant, for up to ``n_iter`` passes.

    Args:
        model: a :class:`GaussianMixtureEM` or :class:`BernoulliMixtureEM`.
        y: data (N, D), N >= 1.
        theta0: the initial parameters.
        n_iter: the largest number of iterations (each one pass over the data).
        parallel: take the E-step and the M-step from the same (q_t(z), theta_t) instead of
            one after the other (q_0(z) is the E-step at theta0). The iterates then repeat
            EM's: theta_(2t - 1) = theta_(2t) = EM's theta_t.
        tol: stop once the mean log-likelihood rose by less than ``tol`` over the last
            iteration (the last two with ``parallel``); None runs all ``n_iter``.

    Returns:
        ``{"theta": [theta_0, ...], "loglik": [mean log-likelihood of each theta],
        "converged": bool (False when ``tol`` is None), "n_iter": iterations run}``.

    Raises:
        TypeError, ValueError: ``y`` not a finite (N, D) tensor with N >= 1, a bad ``n_iter``
            or ``tol``, or a component that collapses (see the model).
    """
    y = _check_y(y)
    theta0 = _check_theta(theta0, y)
    count(n_iter, "n_iter", minimum=0)
    tol = _check_tol(tol)
    lag = 2 if parallel else 1
    thetas, logliks = [theta0], [model.log_likelihood(theta0, y).item()]
    resp = e_step(model.log_joint(theta0, y))
    converged = False
    for _ in range(n_iter):
        if parallel:
            theta = model.from_stats(model.stats(y, resp))
            resp = e_step(model.log_joint(thetas[-1], y))
        else:
            resp = e_step(model.log_joint(thetas[-1], y)) if len(thetas) > 1 else resp
            theta = model.from_stats(model.stats(y, resp))
        thetas.append(theta)
        logliks.append(model.log_likelihood(theta, y).item())
        if tol is not None and len(logliks) > lag and logliks[-1] - logliks[-1 - lag] < tol:
            converged = True
            break
    return {"theta": thetas, "loglik": logliks, "converged": converged, "n_iter": len(thetas) - 1}


class Average(str, Enum):
    """What online EM averages: the statistics s (Eq 57's candidate) or theta (Eq 55's)."""

    STATISTICS = "statistics"
    NATURAL = "natural"


def run_online(
    model: Model,
    y: Tensor,
    theta0: Params,
    *,
    n_passes: int,
    batch_size: int,
    kappa: float = 0.6,
    average: Average | str = Average.STATISTICS,
    generator: torch.Generator | None = None,
) -> dict[str, list]:
    """Online EM with rho_t = (t + 1)^-kappa, t counting minibatches from 0.

    ``average="statistics"``: s <- (1 - rho_t) s + rho_t s_batch, theta = grad A*(s), the
    stochastic approximation of Cappe and Moulines (2009); with sum rho_t = inf and
    sum rho_t^2 < inf (kappa in (0.5, 1]) it reaches a fixed point of batch EM, because the
    minibatch statistic is an unbiased estimate of the full-data one. It is the rho < 1 step
    on the natural parameters (alpha_1, alpha_2) of the conjugate candidate
    q(theta) ~ exp(<alpha_1, theta> - alpha_2 A(theta)) of Eq 57 (they accumulate N s and N),
    followed by the mode of q, grad A*(alpha_1 / alpha_2).

    ``average="natural"``: theta <- (1 - rho_t) theta + rho_t grad A*(s_batch), the rho < 1
    step on the EM candidate N(theta | theta_t, I) of Eq 55, whose natural parameter is theta.
    grad A* is not linear, so its minibatch average is biased (an inverted minibatch
    covariance overestimates the precision) and this variant stalls away from EM's fixed point.

    Returns:
        ``{"theta": [...], "loglik": [...]}`` at the end of each pass (theta0 first).

    Raises:
        ValueError: bad ``n_passes``, ``batch_size``, ``kappa`` or ``average``.
    """
    y = _check_y(y)
    theta0 = _check_theta(theta0, y)
    count(n_passes, "n_passes", minimum=0)
    batch = count(batch_size, "batch_size")
    if isinstance(kappa, bool) or not isinstance(kappa, (int, float)) or not 0.5 < kappa <= 1:
        raise ValueError(f"kappa must be in (0.5, 1]; got {kappa!r}")
    average = parse_option(average, Average, "average")
    theta, s, t = theta0, None, 0
    thetas, logliks = [theta0], [model.log_likelihood(theta0, y).item()]
    for _ in range(n_passes):
        for idx in torch.randperm(y.shape[0], generator=generator).split(batch):
            s_batch = model.stats(y[idx], e_step(model.log_joint(theta, y[idx])))
            rho = (t + 1.0) ** -kappa
            if average is Average.STATISTICS:
                s = s_batch if s is None else _mix(s, s_batch, rho)
                theta = model.from_stats(s)
            else:
                target = model.from_stats(s_batch)
                theta = target if t == 0 else _mix(theta, target, rho)
            t += 1
        thetas.append(theta)
        logliks.append(model.log_likelihood(theta, y).item())
    return {"theta": thetas, "loglik": logliks}


def _mix(old: Params, new: Params, rho: float) -> Params:
    """(1 - rho) old + rho new, entry by entry."""
    return tuple((1 - rho) * a + rho * b for a, b in zip(old, new, strict=True))
