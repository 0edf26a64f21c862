"""VMP and SVI as coordinate-wise BLR steps for a Bayesian Gaussian mixture (Khan & Rue, Sec 5.3).

    from blrlib import vmp
    model = vmp.BayesianGMM(n_components=3, dim=2, alpha0=1.0, beta0=1.0, nu0=2.0)
    out = vmp.run_vmp(model, y, resp0, n_iter=50)          # states, ELBOs, responsibilities
    out = vmp.run_svi(model, y, resp0, n_passes=5, batch_size=100, kappa=0.7)

The model: pi ~ Dirichlet(alpha0), (m_k, Lambda_k) ~ NormalWishart(m0, beta0, W0, nu0),
z_i | pi ~ Categorical(pi), y_i | z_i = k ~ N(m_k, Lambda_k^-1) (Eq 57 with the conjugate
prior), and the mean-field q = q(pi) prod_k q(m_k, Lambda_k) prod_i q(z_i). Each update is a
``blr.step`` whose natural gradient the engine computes by autograd with respect to mu:

* local (the E-step): q(z) is a categorical family; with rho = 1 its natural parameters become
  grad_mu E_q[log p(y, z, theta)], the expected log joint E_q(theta)[log pi_k + log N(y_i | k)]
  (``em.e_step``).
* global: q(pi) and each q(m_k, Lambda_k) take the conjugate step of Eq 54,
  lam <- (1 - rho) lam + rho (lam_0 - grad_mu E_q[loss]), with the loss marginalised exactly
  over q(z) (not by the delta method: Sec 5.3). With rho = 1 on every node this is VMP
  (Winn & Bishop 2005); with a minibatch scaled by N / B and rho_t = (t + tau)^-kappa it is
  SVI (Hoffman et al. 2013).

Derived in :ref:`vi-vmp` (VMP) and :ref:`vi-svi` (SVI).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from blrlib import blr, em
from blrlib._checks import count, positive_float
from blrlib.conjugate import NormalWishartLikelihood
from blrlib.families import Dirichlet, NormalWishart, Params

__all__ = ["BayesianGMM", "State", "elbo", "global_step", "local_step", "run_svi", "run_vmp"]

State = tuple[Params, tuple[Params, ...]]
"""(lam of q(pi), (lam of q(m_k, Lambda_k) for each k))."""

_LIK = NormalWishartLikelihood()


@dataclass(frozen=True)
class BayesianGMM:
    """A Bayesian Gaussian mixture with a Dirichlet and K Normal-Wishart priors (Bishop, 10.2).

    Args:
        n_components: K >= 2.
        dim: the data dimension D.
        alpha0: the Dirichlet concentration of every weight (> 0).
        beta0: the prior precision scale of the means (> 0).
        nu0: the Wishart degrees of freedom (> D - 1).
        m0: the prior mean (D,), zeros when None.
        w0: the Wishart scale W0 (D, D), positive definite, the identity when None.
            (scikit-learn's ``covariance_prior`` is W0^-1.)
        dtype: of every parameter.

    Raises:
        ValueError: non-positive ``alpha0`` or ``beta0``, ``nu0`` <= D - 1, a ``w0`` that is not
            positive definite, or shapes that do not match ``dim``.
    """

    n_components: int
    dim: int
    alpha0: float
    beta0: float
    nu0: float
    m0: Tensor | None = None
    w0: Tensor | None = None
    dtype: torch.dtype = torch.float64
    prior: State = field(init=False, repr=False)

    def __post_init__(self) -> None:
        k, d = count(self.n_components, "n_components", minimum=2), count(self.dim, "dim")
        alpha0 = positive_float(self.alpha0, "alpha0")
        beta0 = positive_float(self.beta0, "beta0")
        if positive_float(self.nu0, "nu0") <= d - 1:
            raise ValueError(f"nu0 must be > dim - 1 = {d - 1}; got {self.nu0!r}")
        m0 = torch.zeros(d, dtype=self.dtype) if self.m0 is None else self.m0.to(self.dtype)
        w0 = torch.eye(d, dtype=self.dtype) if self.w0 is None else self.w0.to(self.dtype)
        if tuple(m0.shape) != (d,):
            raise ValueError(f"m0 must have shape ({d},); got {tuple(m0.shape)}")
        if tuple(w0.shape) != (d, d) or torch.linalg.cholesky_ex(w0)[1] != 0:
            raise ValueError(f"w0 must be a positive-definite ({d}, {d}) matrix")
        lam_pi = self.weights_family.natural_from_concentration(
            torch.full((k,), alpha0, dtype=self.dtype)
        )
        lam_nw = self.component_family.natural_from_moments(m0, beta0, w0, self.nu0)
        object.__setattr__(self, "prior", (lam_pi, (lam_nw,) * k))

    @property
    def weights_family(self) -> Dirichlet:
        """The Dirichlet family of q(pi)."""
        return Dirichlet(self.n_components, dtype=self.dtype)

    @property
    def component_family(self) -> NormalWishart:
        """The Normal-Wishart family of each q(m_k, Lambda_k)."""
        return NormalWishart(self.dim, dtype=self.dtype)


def _check_y(model: BayesianGMM, y: object) -> Tensor:
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if y.dim() != 2 or y.shape[1] != model.dim or not torch.isfinite(y).all():
        raise ValueError(f"y must be a finite tensor of shape (N, {model.dim}); got {y.shape}")
    return y.to(model.dtype)


def expected_log_joint(model: BayesianGMM, state: State, y: Tensor) -> Tensor:
    """E_q(theta)[log pi_k + log N(y_i | m_k, Lambda_k^-1)], shape (N, K).

    Both terms are affine in the sufficient statistics, so they are evaluated at mu exactly.
    """
    lam_pi, lam_nw = state
    e_log_pi = model.weights_family.to_expectation(lam_pi)[0]
    nw = model.component_family
    cols = [_LIK.log_prob_stats(y, nw.to_expectation(lam)) for lam in lam_nw]
    return e_log_pi + torch.stack(cols, dim=-1)


def local_step(model: BayesianGMM, state: State, y: Tensor) -> Tensor:
    """q(z_i) for each row of y by one BLR step with rho = 1 (the E-step of Eq 55); (N, K)."""
    return em.e_step(expected_log_joint(model, state, y))


def global_step(
    model: BayesianGMM,
    state: State,
    y: Tensor,
    resp: Tensor,
    *,
    rho: float = 1.0,
    scale: float = 1.0,
) -> State:
    """The conjugate BLR step (Eq 54) of q(pi) and every q(m_k, Lambda_k) given q(z) = resp.

    The loss is -scale * sum_i sum_k r_ik log p(y_i, z_i = k | theta), an unbiased estimate of
    the full-data loss when y is a minibatch of B of N points and scale = N / B.
    """
    lam_pi, lam_nw = state
    prior_pi, prior_nw = model.prior

    def loss_pi(mu: Params) -> Tensor:
        return -scale * (resp.sum(0) * mu[0]).sum()

    new_pi = blr.step(
        model.weights_family,
        lam_pi,
        rho=rho,
        prior=prior_pi,
        estimator="exact",
        expected_loss=loss_pi,
    )
    new_nw = []
    for k, (lam, lam0) in enumerate(zip(lam_nw, prior_nw, strict=True)):

        def loss_k(mu: Params, k: int = k) -> Tensor:
            return -scale * (resp[:, k] * _LIK.log_prob_stats(y, mu)).sum()

        new_nw.append(
            blr.step(
                model.component_family,
                lam,
                rho=rho,
                prior=lam0,
                estimator="exact",
                expected_loss=loss_k,
            )
        )
    return new_pi, tuple(new_nw)


def elbo(model: BayesianGMM, state: State, y: Tensor, resp: Tensor) -> Tensor:
    """The full evidence lower bound E_q[log p(y, z, theta)] - E_q[log q] (-Eq 2), constants kept.

    = sum_ik r_ik (E_q[log p(y_i, z_i = k | theta)] - log r_ik) - KL(q(pi) || p(pi))
      - sum_k KL(q(m_k, Lambda_k) || p(m_k, Lambda_k)).
    """
    y = _check_y(model, y)
    lam_pi, lam_nw = state
    prior_pi, prior_nw = model.prior
    data = (resp * expected_log_joint(model, state, y)).sum() - torch.xlogy(resp, resp).sum()
    kl = model.weights_family.kl(lam_pi, prior_pi)
    for lam, lam0 in zip(lam_nw, prior_nw, strict=True):
        kl = kl + model.component_family.kl(lam, lam0)
    return data - kl


def _check_resp(model: BayesianGMM, y: Tensor, resp0: object) -> Tensor:
    if not isinstance(resp0, Tensor) or tuple(resp0.shape) != (y.shape[0], model.n_components):
        raise ValueError(f"resp0 must be a tensor of shape ({y.shape[0]}, {model.n_components})")
    resp0 = resp0.to(model.dtype)
    if not (resp0 >= 0).all() or not torch.allclose(resp0.sum(-1), torch.ones_like(y[:, 0])):
        raise ValueError("resp0: rows must be non-negative and sum to one")
    return resp0


def run_vmp(
    model: BayesianGMM,
    y: Tensor,
    resp0: Tensor,
    *,
    n_iter: int,
    tol: float | None = None,
) -> dict:
    """VMP: the global step from resp0, then up to n_iter (local, global) rounds at rho = 1.

    Args:
        model: the Bayesian Gaussian mixture.
        y: data (N, D).
        resp0: initial responsibilities (N, K), rows on the simplex.
        n_iter: the largest number of rounds.
        tol: stop once a round raised the ELBO by less than ``tol``; None runs all ``n_iter``.

    Returns:
        ``{"state": [...], "elbo": [...], "resp": [...], "converged": bool, "n_iter": int}``,
        one entry per round (the initial global step first); ``elbo[t]`` is evaluated at
        (resp[t], state[t]); ``converged`` is False when ``tol`` is None.

    Raises:
        TypeError, ValueError: bad ``y``, ``resp0``, ``n_iter`` or ``tol``.
    """
    y = _check_y(model, y)
    resp = _check_resp(model, y, resp0)
    count(n_iter, "n_iter", minimum=0)
    tol = None if tol is None else positive_float(tol, "tol")
    state = global_step(model, model.prior, y, resp)
    out: dict = {"state": [state], "elbo": [elbo(model, state, y, resp).item()]}
    out["resp"] = [resp]
    converged = False
    for _ in range(n_iter):
        resp = local_step(model, state, y)
        state = global_step(model, state, y, resp)
        out["state"].append(state)
        out["elbo"].append(elbo(model, state, y, resp).item())
        out["resp"].append(resp)
        if tol is not None and out["elbo"][-1] - out["elbo"][-2] < tol:
            converged = True
            break
    out["converged"], out["n_iter"] = converged, len(out["state"]) - 1
    return out


def run_svi(
    model: BayesianGMM,
    y: Tensor,
    resp0: Tensor,
    *,
    n_passes: int,
    batch_size: int,
    kappa: float = 0.7,
    tau: float = 1.0,
    rho: float | None = None,
    evals_per_pass: int = 1,
    generator: torch.Generator | None = None,
) -> dict[str, list]:
    """SVI: per minibatch, local steps at rho = 1, then a global step at rho_t = (t + tau)^-kappa.

    The global step scales the minibatch loss by N / B (Hoffman et al. 2013). It starts from the
    same initial global step as :func:`run_vmp`.

    Args:
        model, y, resp0: as in :func:`run_vmp`.
        n_passes: passes over the data (each a fresh random permutation).
        batch_size: B, 1 <= B <= N.
        kappa: the decay, in (0.5, 1] (Robbins-Monro).
        tau: the delay tau >= 0; t counts global steps from 1, so tau = 0 starts at rho = 1.
        rho: a constant learning rate instead of the schedule (rho = 1 with B = N is VMP).
        evals_per_pass: how often per pass the full-data ELBO is recorded (it costs a local
            step on all N points).
        generator: for the permutations.

    Returns:
        ``{"state": [...], "elbo": [...], "passes": [...]}``: the initial global step, then the
        state at each evaluation, with the ELBO at the optimal q(z) of all N points and the
        number of passes over the data so far.
    """
    y = _check_y(model, y)
    resp = _check_resp(model, y, resp0)
    count(n_passes, "n_passes", minimum=0)
    n = y.shape[0]
    batch = count(batch_size, "batch_size")
    if batch > n:
        raise ValueError(f"batch_size must be <= the number of data points {n}; got {batch}")
    if isinstance(kappa, bool) or not isinstance(kappa, (int, float)) or not 0.5 < kappa <= 1:
        raise ValueError(f"kappa must be in (0.5, 1]; got {kappa!r}")
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau >= 0):
        raise ValueError(f"tau must be a finite float >= 0; got {tau!r}")
    state = global_step(model, model.prior, y, resp)
    out: dict[str, list] = {"state": [state], "elbo": [elbo(model, state, y, resp).item()]}
    out["passes"] = [0.0]
    t, seen = 0, 0
    n_batches = math.ceil(n / batch)
    every = max(1, n_batches // count(evals_per_pass, "evals_per_pass"))
    for _ in range(n_passes):
        for j, idx in enumerate(torch.randperm(n, generator=generator).split(batch)):
            t, seen = t + 1, seen + len(idx)
            rho_t = rho if rho is not None else min(1.0, (t + tau) ** -kappa)
            local = local_step(model, state, y[idx])
            state = global_step(model, state, y[idx], local, rho=rho_t, scale=n / len(idx))
            if (j + 1) % every == 0 or j + 1 == n_batches:
                full = local_step(model, state, y)
                out["state"].append(state)
                out["elbo"].append(elbo(model, state, y, full).item())
                out["passes"].append(seen / n)
    return out
