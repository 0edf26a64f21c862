"""The spike-and-slab candidate of dropout (Khan & Rue 2023, Eq 41 and App G).

    import torch
    from blrlib.families import SpikeSlab
    q = SpikeSlab(0.8, 1e4, n_units=3, unit_dim=2, dtype=torch.float64)
    lam = q.natural_from_moments(torch.ones(3, 2), torch.eye(2).repeat(3, 1, 1))
    r = q.responsibilities(lam, q.sample(lam, 5))   # (5, 3): q(z_j = 1 | theta)

Each unit j (one of J) owns a weight vector theta_j of P weights (its outgoing weights, Eq 39):

    q(theta_j) = pi1 N(theta_j | m_j, S_j^-1) + (1 - pi1) N(theta_j | 0, s0^-1 I)     (Eq 41),

independent over units; theta is flat, unit-major: ``theta.view(J, P)[j]`` is theta_j.
pi1 and s0 are fixed, so as in App G the joint q(theta, z) has one set of parameters per unit,
lam_j = (S_j m_j, -S_j / 2) and mu_j = (pi1 m_j, pi1 (S_j^-1 + m_j m_j^T)), the gradient of
A(lam) = pi1 sum_j A_N(lam_j). With a fixed ``precision`` s (S_j = s I, Sec 4.1) only the means
are free: lam_j = (s m_j,), mu_j = (pi1 m_j,). The entropy has no closed form (a mixture).

Derived in :ref:`dropout-derivation`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from blrlib import _checks
from blrlib.families import _gaussian_math as gm
from blrlib.families._base import ExponentialFamily, Order, Params

__all__ = ["SpikeSlab", "check_masks", "check_pi1"]


def check_pi1(pi1: object, name: str = "pi1") -> float:
    """pi1 as a float if it is in (0, 1]; else TypeError / ValueError naming ``name``."""
    if isinstance(pi1, bool) or not isinstance(pi1, (int, float)):
        raise TypeError(f"{name} must be a float in (0, 1]; got {type(pi1).__name__}")
    if not (math.isfinite(pi1) and 0.0 < pi1 <= 1.0):
        raise ValueError(f"{name} must be in (0, 1]; got {pi1!r}")
    return float(pi1)


def check_masks(masks: object, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """Validate dropout masks z in {0, 1}: a floating tensor of ``shape``.

    Raises:
        TypeError: ``masks`` is not a tensor of dtype ``dtype``.
        ValueError: wrong shape, or entries other than 0 and 1.
    """
    if not isinstance(masks, Tensor):
        raise TypeError(f"masks must be a torch.Tensor; got {type(masks).__name__}")
    if masks.dtype != dtype:
        raise TypeError(f"masks must have dtype {dtype} (0. or 1.); got {masks.dtype}")
    if tuple(masks.shape) != shape:
        raise ValueError(f"masks must have shape {shape}; got {tuple(masks.shape)}")
    if not ((masks == 0) | (masks == 1)).all():
        raise ValueError("masks must contain only 0 and 1 (unscaled, Eq 39)")
    return masks


class SpikeSlab(ExponentialFamily):
    """Eq 41 for J units of P weights each, with fixed keep probability pi1 and spike precision s0.

    Args:
        pi1: the probability of keeping a unit, in (0, 1].
        s0: the fixed precision of the second component N(0, s0^-1 I), > 0.
        n_units, unit_dim: J and P; theta has J * P entries.
        precision: None (S_j free, full P x P) or a fixed scalar s > 0 (S_j = s I).
        dtype, device: as for every family.

    Raises:
        TypeError, ValueError: ``pi1`` outside (0, 1], ``s0`` or ``precision`` not positive,
            bad ``n_units`` / ``unit_dim``; each message names the argument.
    """

    closed_form_entropy_gradient = False

    def __init__(
        self,
        pi1: float,
        s0: float,
        *,
        n_units: int,
        unit_dim: int,
        precision: float | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.pi1 = check_pi1(pi1)
        self.s0 = _checks.positive_float(s0, "s0")
        self.n_units = _checks.count(n_units, "n_units")
        self.unit_dim = _checks.count(unit_dim, "unit_dim")
        super().__init__(self.n_units * self.unit_dim, dtype=dtype, device=device)
        self.fixed = precision is not None
        self.precision = (
            None if precision is None else _checks.positive_float(precision, "precision")
        )
        self.order = Order.FIRST if self.fixed else Order.FULL

    def __repr__(self) -> str:
        s = f", precision={self.precision}" if self.fixed else ""
        return (
            f"SpikeSlab(pi1={self.pi1}, s0={self.s0}, n_units={self.n_units}, "
            f"unit_dim={self.unit_dim}{s}, dtype={self.dtype})"
        )

    # ------------------------------------------------------------- parameters
    def natural_shapes(self) -> tuple[tuple[int, ...], ...]:
        """((J, P), (J, P, P)), or ((J, P),) with a fixed precision."""
        j, p = self.n_units, self.unit_dim
        return ((j, p),) if self.fixed else ((j, p), (j, p, p))

    def _moments(self, lam: Params) -> tuple[Tensor, Tensor]:
        """The slab's means (J, P) and Cholesky factors of S_j (J, P, P)."""
        if self.fixed:
            eye = torch.eye(self.unit_dim, dtype=self.dtype, device=self.device)
            return lam[0] / self.precision, math.sqrt(self.precision) * eye.expand(
                self.n_units, -1, -1
            )
        mean, _, chol = gm.moments(lam[0], lam[1])
        return mean, chol

    def log_partition(self, lam: Params) -> Tensor:
        """A(lam) = pi1 sum_j A_N(lam_j), whose gradient is App G's mu."""
        if self.fixed:
            return 0.5 * self.pi1 * (lam[0] * lam[0]).sum() / self.precision
        return self.pi1 * gm.log_partition(lam[0], lam[1]).sum()

    def to_expectation(self, lam: Params) -> Params:
        """mu_j = (pi1 m_j, pi1 (S_j^-1 + m_j m_j^T)) (App G)."""
        if self.fixed:
            return (self.pi1 * lam[0] / self.precision,)
        first, second = gm.expectation(lam[0], lam[1])
        return self.pi1 * first, self.pi1 * second

    def mean_cov_from_expectation(self, mu: Params) -> tuple[Tensor, Tensor]:
        """The slab's (m_j, S_j^-1) from mu (inverse of App G's map), differentiable in mu."""
        mean = mu[0] / self.pi1
        if self.fixed:
            eye = torch.eye(self.unit_dim, dtype=self.dtype, device=self.device)
            return mean, (eye / self.precision).expand(self.n_units, -1, -1)
        return gm.mean_cov_from_expectation(mean, mu[1] / self.pi1)

    def to_natural(self, mu: Params) -> Params:
        """lam_j = (S_j m_j, -S_j / 2), or (s m_j,)."""
        if self.fixed:
            return (self.precision * mu[0] / self.pi1,)
        return gm.natural_from_mean_cov(*self.mean_cov_from_expectation(mu))

    def mean_cov(self, lam: Params) -> tuple[Tensor, Tensor]:
        """The slab component's means (J, P) and covariances S_j^-1 (J, P, P)."""
        mean, chol = self._moments(lam)
        return mean, gm.symmetrize(torch.cholesky_inverse(chol))

    def natural_from_moments(self, m: Tensor, precision: Tensor | None = None) -> Params:
        """lam from slab means (J, P) and precisions (J, P, P) (None with a fixed precision).

        Raises:
            ValueError: wrong shapes, non-finite values or a precision not positive definite.
        """
        m = torch.as_tensor(m, dtype=self.dtype, device=self.device)
        shape = (self.n_units, self.unit_dim)
        if self.fixed:
            if tuple(m.shape) != shape or not torch.isfinite(m).all():
                raise ValueError(f"m must be finite with shape {shape}; got {tuple(m.shape)}")
            return (self.precision * m,)
        precision = torch.as_tensor(precision, dtype=self.dtype, device=self.device)
        return gm.natural_from_checked_moments(m, precision, shape)

    # ------------------------------------------------------------- densities
    def sufficient_statistics(self, theta: Tensor) -> Params:
        """The slab's statistics (theta_j, theta_j theta_j^T) per unit; the joint statistics
        are 1[z_j = 1] times these. Shapes (..., J, P) and (..., J, P, P)."""
        t = theta.unflatten(-1, (self.n_units, self.unit_dim))
        return (t,) if self.fixed else (t, t.unsqueeze(-1) * t.unsqueeze(-2))

    def log_base_measure(self, theta: Tensor) -> Tensor:
        """log h of the slab: -JP/2 log(2 pi) (and -s/2 |theta|^2 + JP/2 log s if fixed)."""
        out = theta.new_full(theta.shape[:-1], -0.5 * self.dim * gm.LOG_2PI)
        if self.fixed:
            out = out + 0.5 * self.dim * math.log(self.precision)
            out = out - 0.5 * self.precision * (theta * theta).sum(-1)
        return out

    def _component_log_probs(self, lam: Params, theta: Tensor) -> tuple[Tensor, Tensor]:
        """log pi1 N(theta_j | m_j, S_j^-1) and log (1 - pi1) N(theta_j | 0, s0^-1 I), (..., J)."""
        self._check_theta(theta)
        t = theta.unflatten(-1, (self.n_units, self.unit_dim))
        mean, chol = self._moments(lam)
        slab = math.log(self.pi1) + gm.log_density(t, mean, chol)
        if self.pi1 == 1.0:
            return slab, torch.full_like(slab, -math.inf)
        p = self.unit_dim
        spike = 0.5 * p * (math.log(self.s0) - gm.LOG_2PI) - 0.5 * self.s0 * (t * t).sum(-1)
        return slab, math.log1p(-self.pi1) + spike

    def log_prob(self, lam: Params, theta: Tensor) -> Tensor:
        """log q(theta) = sum_j log[pi1 N(theta_j | m_j, S_j^-1) + (1 - pi1) N(theta_j | 0, I / s0)]
        (Eq 41); theta (..., JP) -> (...)."""
        slab, spike = self._component_log_probs(lam, theta)
        return torch.logaddexp(slab, spike).sum(-1)

    def responsibilities(self, lam: Params, theta: Tensor) -> Tensor:
        """The exact responsibilities r_j(theta) = q(z_j = 1 | theta) of Eq 32, per unit;
        theta (..., JP) -> (..., J)."""
        slab, spike = self._component_log_probs(lam, theta)
        return torch.sigmoid(slab - spike)

    def rsample(
        self,
        lam: Params,
        n: int,
        *,
        generator: torch.Generator | None = None,
        masks: Tensor | None = None,
    ) -> Tensor:
        """theta_j = z_j (m_j + S_j^-1/2 eps1) + (1 - z_j) s0^-1/2 eps2 (App G); shape (n, JP).

        Args:
            masks: z of shape (n, J) (drawn from Bernoulli(pi1) when None).
        """
        self._check_n(n)
        shape = (n, self.n_units)
        z = (
            torch.bernoulli(torch.full(shape, self.pi1, dtype=self.dtype), generator=generator)
            if masks is None
            else check_masks(masks, shape, self.dtype)
        ).unsqueeze(-1)
        eps = self._randn(2 * n, generator).unflatten(-1, (self.n_units, self.unit_dim))
        mean, chol = self._moments(lam)
        slab = gm.reparameterise(mean, chol, eps[:n])
        return (z * slab + (1 - z) * eps[n:] / math.sqrt(self.s0)).flatten(-2)

    def entropy(
        self, lam: Params, *, n_samples: int = 4096, generator: torch.Generator | None = None
    ) -> Tensor:
        """Monte Carlo estimate -1/n sum_i log q(theta_i) (no closed form for a mixture)."""
        return -self.log_prob(lam, self.rsample(lam, n_samples, generator=generator)).mean()

    def neg_entropy_natural_gradient(self, lam: Params) -> Params:
        """Not in closed form: use :meth:`approx_neg_entropy_natural_gradient` (Eq 85-86), or
        put log q inside the expectation (the exact mixture rule, Eq 67-68)."""
        raise NotImplementedError(
            "SpikeSlab has no closed-form entropy gradient; the dropout estimator uses the "
            "responsibility approximation (Eq 85-86) instead"
        )

    # ------------------------------------------------------------- the BLR
    def expected_loss_surrogate(
        self, mu: Params, grad: Tensor, hess: Tensor | None = None
    ) -> Tensor:
        """A function of mu whose gradient is the natural gradient of E_q[f] (App E and G).

        With grad_j = E_{N(m_j, S_j^-1)}[grad_j f] and hess_j = E[Hessian_jj f] held constant,

            s(mu) = pi1 sum_j [<grad_j, m_j(mu)> + 1/2 <hess_j, S_j^-1(mu)>],

        so that grad_{m_j} s = pi1 grad_j and 2 grad_{S_j^-1} s = pi1 hess_j (Lin et al. 2019,
        Thm 6-7), and the BLR in mu gives Eq 82-83. ``hess`` is ignored with a fixed precision.

        Args:
            mu: expectation parameters.
            grad: (J, P). hess: (J, P, P), or None with a fixed precision.

        Raises:
            ValueError: wrong shapes.
        """
        j, p = self.n_units, self.unit_dim
        if tuple(grad.shape) != (j, p):
            raise ValueError(f"grad must have shape ({j}, {p}); got {tuple(grad.shape)}")
        mean, cov = self.mean_cov_from_expectation(mu)
        value = (grad * mean).sum()
        if not self.fixed:
            if hess is None or tuple(hess.shape) != (j, p, p):
                got = None if hess is None else tuple(hess.shape)
                raise ValueError(f"hess must have shape ({j}, {p}, {p}); got {got}")
            value = value + 0.5 * (hess * cov).sum()
        return self.pi1 * value

    def approx_log_q_grad_hess(self, lam: Params) -> tuple[Tensor, Tensor | None]:
        """Eq 85-86: E_{slab}[grad log q] ~ 0 and E_{slab}[Hessian log q] ~ -S_j.

        Both hold when the responsibility r_j(theta) ~ 1 wherever the slab has mass (the two
        components "not close"); :func:`blrlib.dropout.entropy_terms` gives the truth.
        """
        grad = torch.zeros(self.n_units, self.unit_dim, dtype=self.dtype, device=self.device)
        if self.fixed:
            return grad, None
        return grad, -gm.precision(lam[1])

    def approx_neg_entropy_natural_gradient(self, lam: Params) -> Params:
        """grad_mu E_q[log q] under Eq 85-86: the surrogate's gradient at grad = 0, hess = -S.

        In the rule this turns S_j + rho / pi1 (pi1 hess - pi1 S_j) into Eq 43's
        (1 - rho) S_j + rho hess, and leaves the mean step of Eq 42 without an entropy term.
        """
        grad, hess = self.approx_log_q_grad_hess(lam)
        mu = tuple(m.detach().requires_grad_(True) for m in self.to_expectation(lam))
        with torch.enable_grad():
            value = self.expected_loss_surrogate(mu, grad, hess)
            return torch.autograd.grad(value, mu, allow_unused=True, materialize_grads=True)

    def _check_natural_values(self, lam: Params, name: str) -> None:
        if not self.fixed:
            gm.check_symmetric(lam[1], f"{name}[1] (-S_j / 2)")
            gm.check_precision(gm.precision(lam[1]), f"{name}[1] (-S_j / 2)")
