"""What App G's two approximations cost: the exact spike-and-slab BLR step on a tiny model.

    from blrlib import dropout, families
    q = families.SpikeSlab(0.8, 1e3, n_units=2, unit_dim=1, dtype=torch.float64)
    lam = q.natural_from_moments(torch.tensor([[1.0], [-0.5]]), torch.ones(2, 1, 1) * 4)
    cost = dropout.approximation_cost(q, lam, loss, rho=0.5)
    cost["mean_error"], cost["entropy_grad_error"]   # Eq 42-43 against the exact mixture step

The exact rule for the mixture candidate (Eq 67-68 of Khan & Rue 2023, App G's Eq 82-83) needs
two expectations per unit j, both over the slab N(m_j, S_j^-1) of that unit:

* the loss term E_q[z_j grad_j loss(theta)] / pi1, over q of all units (here by enumerating
  the masks and Gauss-Hermite quadrature in each Gaussian), which the dropout estimator replaces
  by z_j grad_j loss(z * m) / pi1 at one mask (Eq 84, the delta method at the dropout mean);
* the entropy term E_slab[grad log q_j], E_slab[Hessian log q_j], with the exact responsibility
  r_j(theta) inside (Eq 31-32; by quadrature on a grid that resolves the spike), which Eq 85-86
  replace by 0 and -S_j.

Everything here is for unit_dim = 1 and a few units (2^J masks): small enough to be exact.
:func:`entropy_gap` (any unit_dim, Monte Carlo) measures the error of the "components far
apart" entropy that Gal & Ghahramani (2016) use, E_q[H_Bernoulli(r_j)].

Derived in :ref:`dropout-derivation`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.func import grad, hessian, vmap

from blrlib import _checks
from blrlib.estimators import dropout_grad_hess
from blrlib.families import Params, SpikeSlab

__all__ = [
    "approximation_cost",
    "entropy_gap",
    "entropy_terms",
    "expected_dropout_terms",
    "loss_terms",
    "natural_gradient_from_terms",
]


def _check(family: SpikeSlab) -> None:
    if not isinstance(family, SpikeSlab):
        raise TypeError(f"family must be a SpikeSlab; got {type(family).__name__}")
    if family.unit_dim != 1 or family.fixed or family.n_units > 8:
        raise ValueError(
            "family: the exact step is computed for unit_dim = 1, a free precision and at most "
            f"8 units; got {family!r}"
        )


def _masks(family: SpikeSlab) -> list[tuple[Tensor, float]]:
    """All 2^J masks z with their probabilities prod pi1^z (1 - pi1)^(1 - z)."""
    out = []
    for bits in itertools.product((0.0, 1.0), repeat=family.n_units):
        z = torch.tensor(bits, dtype=family.dtype)
        prob = math.prod(family.pi1 if b else 1.0 - family.pi1 for b in bits)
        if prob > 0:
            out.append((z, prob))
    return out


def _unit(family: SpikeSlab, lam: Params, j: int) -> tuple[SpikeSlab, Params]:
    """Unit j alone, as a one-unit family and its parameters."""
    one = SpikeSlab(family.pi1, family.s0, n_units=1, unit_dim=1, dtype=family.dtype)
    return one, (lam[0][j : j + 1], lam[1][j : j + 1])


def entropy_terms(family: SpikeSlab, lam: Params, n_grid: int = 4001) -> tuple[Tensor, Tensor]:
    """Exact E_slab[d/dtheta_j log q_j] and E_slab[d^2/dtheta_j^2 log q_j] per unit, (J,) each.

    Eq 85-86 approximate them by 0 and -S_j. The integrals are trapezoid sums on a grid of
    +-12 slab standard deviations merged with a grid of +-12 spike standard deviations around 0,
    so that a narrow spike (large s0) is resolved.
    """
    _check(family)
    mean, cov = family.mean_cov(lam)
    m, sd = mean[:, 0], cov[:, 0, 0].sqrt()
    prec = 1.0 / cov[:, 0, 0]
    spike_sd = 1.0 / math.sqrt(family.s0)
    u = torch.linspace(-12.0, 12.0, n_grid, dtype=family.dtype)
    g_out, h_out = [], []
    for j in range(family.n_units):
        t, _ = torch.sort(torch.cat([m[j] + sd[j] * u, spike_sd * u]))

        one, lam_j = _unit(family, lam, j)
        r = one.responsibilities(lam_j, t.unsqueeze(-1))[..., 0]
        d = prec[j] * (t - m[j])  # -(d/dt) log of the slab; the spike's is s0 t
        dlog = -r * d - (1 - r) * family.s0 * t  # (d/dt) log q_j, with the exact r (Eq 31-32)
        d2log = -r * prec[j] - (1 - r) * family.s0 + r * (1 - r) * (d - family.s0 * t) ** 2
        dens = torch.exp(-0.5 * prec[j] * (t - m[j]) ** 2) * (prec[j] / (2 * math.pi)).sqrt()
        g_out.append(torch.trapezoid(dens * dlog, t))
        h_out.append(torch.trapezoid(dens * d2log, t))
    return torch.stack(g_out), torch.stack(h_out)


def loss_terms(
    family: SpikeSlab, lam: Params, loss: Callable[[Tensor], Tensor], n_points: int = 24
) -> tuple[Tensor, Tensor]:
    """Exact E_q[z_j d_j loss] / pi1 and E_q[z_j d_jj loss] / pi1, (J,) each: the slab
    expectations of App E, over the masks (enumerated) and Gauss-Hermite nodes (n_points^J)."""
    _check(family)
    mean, cov = family.mean_cov(lam)
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_points)
    x = torch.as_tensor(nodes, dtype=family.dtype)
    w = torch.as_tensor(weights / weights.sum(), dtype=family.dtype)
    grid = torch.cartesian_prod(*[x] * family.n_units).reshape(-1, family.n_units)
    wgrid = torch.cartesian_prod(*[w] * family.n_units).reshape(-1, family.n_units).prod(-1)
    g_tot = torch.zeros(family.n_units, dtype=family.dtype)
    h_tot = torch.zeros(family.n_units, dtype=family.dtype)
    for z, prob in _masks(family):
        loc = z * mean[:, 0]
        scale = z * cov[:, 0, 0].sqrt() + (1 - z) / math.sqrt(family.s0)
        theta = loc + scale * grid
        gs = vmap(grad(loss))(theta)
        hs = torch.diagonal(vmap(hessian(loss))(theta), dim1=-2, dim2=-1)
        g_tot += prob * z * (wgrid[:, None] * gs).sum(0)
        h_tot += prob * z * (wgrid[:, None] * hs).sum(0)
    return g_tot / family.pi1, h_tot / family.pi1


def expected_dropout_terms(
    family: SpikeSlab, lam: Params, loss: Callable[[Tensor], Tensor]
) -> tuple[Tensor, Tensor]:
    """The dropout estimator of Eq 84 averaged over all masks: E_z[z_j d_j loss(z * m)] / pi1
    and the same for the Hessian diagonal, (J,) each (its expected Eq 42-43 direction)."""
    _check(family)
    g_tot = torch.zeros(family.n_units, dtype=family.dtype)
    h_tot = torch.zeros(family.n_units, dtype=family.dtype)
    for z, prob in _masks(family):
        g, h = dropout_grad_hess(family, lam, loss, z)
        g_tot += prob * g[:, 0]
        h_tot += prob * h[:, 0, 0]
    return g_tot, h_tot


def natural_gradient_from_terms(
    family: SpikeSlab, lam: Params, grad_f: Tensor, hess_f: Tensor
) -> Params:
    """grad_mu of E_q[f] from the slab expectations of grad f and Hessian f (App E), (J,) each."""
    mu = tuple(p.detach().requires_grad_(True) for p in family.to_expectation(lam))
    value = family.expected_loss_surrogate(mu, grad_f.view(-1, 1), hess_f.view(-1, 1, 1))
    return torch.autograd.grad(value, mu)


def _step(family: SpikeSlab, lam: Params, ng: Params, rho: float) -> tuple[Tensor, Tensor]:
    """The slab means and precisions (J,) after lam <- lam - rho ng."""
    new = tuple(p - rho * g for p, g in zip(lam, ng, strict=True))
    s_new = -2.0 * new[1][:, 0, 0]
    return new[0][:, 0] / s_new, s_new


def approximation_cost(
    family: SpikeSlab,
    lam: Params,
    loss: Callable[[Tensor], Tensor],
    *,
    rho: float,
    n_points: int = 24,
) -> dict[str, Any]:
    """One exact mixture BLR step (Eq 82-83) against the dropout step (Eq 42-43) in expectation.

    Returns a dict of floats: ``loss_grad_error`` and ``loss_hess_error`` (the delta method,
    Eq 84: max over units of the absolute error), ``entropy_grad_error`` and
    ``entropy_hess_error`` (Eq 85-86: |E_slab[d log q]| and |E_slab[d^2 log q] + S_j|, each
    relative to S_j (1 + |m_j|) and to S_j), and ``mean_error`` / ``precision_error``: the
    largest relative difference of the new slab means and precisions after one step with
    ``rho`` (relative to the exact step's size and to S, respectively); the same with only
    one approximation made, ``mean_error_entropy`` (Eq 85-86, the loss term exact) and
    ``mean_error_loss`` (Eq 84, the entropy term exact); plus ``valid``: whether the exact step
    keeps S positive.
    """
    _check(family)
    mean, cov = family.mean_cov(lam)
    m, prec = mean[:, 0], 1.0 / cov[:, 0, 0]
    lg, lh = loss_terms(family, lam, loss, n_points)
    dg, dh = expected_dropout_terms(family, lam, loss)
    eg, eh = entropy_terms(family, lam)
    terms = {
        "exact": (lg + eg, lh + eh),
        "approx": (dg, dh - prec),
        "entropy": (lg, lh - prec),  # Eq 85-86 only
        "loss": (dg + eg, dh + eh),  # Eq 84 only
    }
    steps = {
        k: _step(family, lam, natural_gradient_from_terms(family, lam, *t), rho)
        for k, t in terms.items()
    }
    m_e, s_e = steps["exact"]
    size = (m_e - m).abs().max().clamp_min(1e-12)

    def mean_error(name: str) -> float:
        return float((steps[name][0] - m_e).abs().max() / size)

    return {
        "loss_grad_error": float((lg - dg).abs().max()),
        "loss_hess_error": float((lh - dh).abs().max()),
        "entropy_grad_error": float((eg.abs() / (prec * (1 + m.abs()))).max()),
        "entropy_hess_error": float(((eh + prec).abs() / prec).max()),
        "mean_error": mean_error("approx"),
        "mean_error_entropy": mean_error("entropy"),
        "mean_error_loss": mean_error("loss"),
        "precision_error": float(((steps["approx"][1] - s_e).abs() / prec).max()),
        "valid": bool((s_e > 0).all()),
    }


def entropy_gap(
    family: SpikeSlab,
    lam: Params,
    *,
    n_samples: int = 20_000,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """The error of the "components far apart" entropy, per unit: E_q[H_Bernoulli(r_j)].

    With z_j the component of unit j, H(theta_j) = H(z_j) + H(theta_j | z_j) - H(z_j | theta_j),
    so the approximation H(q_j) ~ H_Bernoulli(pi1) + pi1 H(slab) + (1 - pi1) H(spike), which
    Gal & Ghahramani (2016, App. A, Prop. 1) use for a mixture of two Gaussians of equal
    covariance, exceeds the truth by exactly H(z_j | theta_j) = E_q[H_Bernoulli(r_j(theta))]
    >= 0, the expected entropy of the responsibilities of Eq 32. It is 0 exactly when r is 0
    or 1 wherever q has mass, the condition Eq 85-86 also need. Any unit_dim; Monte Carlo.

    Returns:
        (estimate, standard error), each (J,), in nats.
    """
    if not isinstance(family, SpikeSlab):
        raise TypeError(f"family must be a SpikeSlab; got {type(family).__name__}")
    n_samples = _checks.count(n_samples, "n_samples", minimum=2)
    r = family.responsibilities(lam, family.rsample(lam, n_samples, generator=generator))
    h = -(torch.special.xlogy(r, r) + torch.special.xlogy(1 - r, 1 - r))
    return h.mean(0), h.std(0) / math.sqrt(n_samples)
