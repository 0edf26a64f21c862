"""Loss landscapes with Gaussian expectations in closed form, for Fig 1 and Sec 3.2.

    from blrlib import landscapes
    loss = landscapes.SharpFlat()
    loss(torch.tensor([0.3]))                             # bar-ell(theta), theta of shape (1,)
    loss.expected(torch.tensor([0.3]), torch.tensor([0.1]))  # E_N(0.3, 0.1)[bar-ell(theta)]

Each landscape is a total loss bar-ell(theta) (Eq 1) that the BLR can be run on with any
estimator: ``expected`` gives E_q[bar-ell] for a Gaussian q in closed form, which is what
``estimator="exact"`` differentiates, and the plain call is what the delta method and Monte
Carlo use.
The 1-D landscapes are separable, bar-ell(theta) = sum_d f(theta_d), so that a P-dimensional
run with a diagonal Gaussian is P independent 1-D runs, one from each starting point.

Used in :ref:`gnr-fig1` and :ref:`gnr-mixture`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import grad, vmap

from blrlib import _checks

__all__ = [
    "DoubleWell",
    "SharpFlat",
    "Wall",
    "bayes_objective",
    "best_gaussian",
    "grid_posterior",
    "local_minima",
]


def _bump_expectation(m: Tensor, var: Tensor, centre: float, width: float) -> Tensor:
    """E_N(theta | m, var)[exp(-(theta - c)^2 / (2 w^2))], a Gaussian convolution."""
    total = width**2 + var
    return width / total.sqrt() * torch.exp(-((m - centre) ** 2) / (2 * total))


@dataclass(frozen=True)
class SharpFlat:
    """A sharp deep minimum and a flat shallow one, as in Fig 1(b) of Khan & Rue (2023).

    f(t) = scale * [t^2 / (2 s0^2) - sum_j a_j exp(-(t - c_j)^2 / (2 w_j^2))].
    The first bump is deeper (the ERM solution) but narrow; the second is shallow but wide.
    ``scale`` plays the role of the number of examples: the larger it is, the more the
    posterior concentrates, and the more the Bayes solution behaves like ERM.
    """

    depths: tuple[float, float] = (4.5, 4.0)
    centres: tuple[float, float] = (-1.0, 2.5)
    widths: tuple[float, float] = (0.1, 1.0)
    prior_scale: float = 4.0
    scale: float = 1.0

    def __call__(self, theta: Tensor) -> Tensor:
        value = theta**2 / (2 * self.prior_scale**2)
        for a, c, w in zip(self.depths, self.centres, self.widths, strict=True):
            value = value - a * torch.exp(-((theta - c) ** 2) / (2 * w**2))
        return self.scale * value.sum(-1)

    def expected(self, m: Tensor, var: Tensor) -> Tensor:
        """E_q[bar-ell] for q = N(m, diag(var)), a function of the mean and variances."""
        value = (m**2 + var) / (2 * self.prior_scale**2)
        for a, c, w in zip(self.depths, self.centres, self.widths, strict=True):
            value = value - a * _bump_expectation(m, var, c, w)
        return self.scale * value.sum(-1)


@dataclass(frozen=True)
class Wall:
    """A minimum right next to a region of very high loss, as in Fig 1(a).

    f(t) = scale * [(t - c)^2 / 2 + exp(beta (t - w))]: a quadratic bowl
    whose minimum c sits just left of a steep exponential wall at w.
    """

    centre: float = 1.0
    wall: float = 1.2
    steepness: float = 8.0
    scale: float = 1.0

    def __call__(self, theta: Tensor) -> Tensor:
        wall = torch.exp(self.steepness * (theta - self.wall))
        return self.scale * ((theta - self.centre) ** 2 / 2 + wall).sum(-1)

    def expected(self, m: Tensor, var: Tensor) -> Tensor:
        """E_q[bar-ell] for q = N(m, diag(var)): E[exp(b t)] = exp(b m + b^2 var / 2)."""
        b = self.steepness
        wall = torch.exp(b * (m - self.wall) + b**2 * var / 2)
        return self.scale * (((m - self.centre) ** 2 + var) / 2 + wall).sum(-1)


@dataclass(frozen=True)
class DoubleWell:
    """bar-ell(theta) = scale * sum_d (theta_d^2 - 1)^2: 2^P minima at the corners (+-1, ..., +-1).

    The multimodal target of Sec 3.2: one Gaussian can sit in one well only, a mixture can
    cover several.
    """

    scale: float = 2.0

    def __call__(self, theta: Tensor) -> Tensor:
        return self.scale * ((theta**2 - 1) ** 2).sum(-1)

    def minima(self, dim: int) -> Tensor:
        """All 2^dim minimisers, shape (2^dim, dim)."""
        corners = torch.cartesian_prod(*[torch.tensor([-1.0, 1.0], dtype=torch.float64)] * dim)
        return corners.reshape(2**dim, dim)


def grid_posterior(
    loss: SharpFlat | Wall, lo: float, hi: float, n: int = 4001
) -> tuple[Tensor, Tensor, float]:
    """The exact posterior exp(-bar-ell) / Z on a 1-D grid, for comparisons.

    Returns:
        (grid, density, log_z): grid of shape (n,), the normalised density on it, and log Z
        by the trapezoidal rule.
    """
    grid = torch.linspace(lo, hi, n, dtype=torch.float64)
    logp = -loss(grid.unsqueeze(-1))  # each grid point is a 1-D theta
    top = logp.max()
    log_z = top + torch.log(torch.trapezoid(torch.exp(logp - top), grid))
    return grid, torch.exp(logp - log_z), float(log_z)


def _check_interval(lo: float, hi: float, n: int) -> None:
    if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo < hi):
        raise ValueError(f"lo, hi: need numbers lo < hi; got lo={lo!r}, hi={hi!r}")
    _checks.count(n, "n", minimum=3)


def local_minima(loss: SharpFlat | Wall, lo: float, hi: float, n: int = 20001) -> Tensor:
    """The local minimisers of a 1-D landscape inside [lo, hi], lowest loss first.

    A grid search that does not use the BLR: the interior points of an ``n``-point grid that are
    lower than both neighbours, each refined by 20 Newton steps on the derivative (to rounding;
    a minimum narrower than the grid spacing is missed, so ``n`` must resolve the narrowest one).

    Returns:
        The minimisers, shape (K,), sorted by ``loss`` (the first is the global one on [lo, hi]).

    Raises:
        ValueError: ``lo >= hi``, ``n < 3``, or no interior minimum on the grid.
    """
    _check_interval(lo, hi, n)
    grid = torch.linspace(lo, hi, n, dtype=torch.float64)
    values = loss(grid.unsqueeze(-1))
    inner = (values[1:-1] < values[:-2]) & (values[1:-1] < values[2:])
    theta = grid[1:-1][inner]
    if theta.numel() == 0:
        raise ValueError(f"lo, hi: no interior minimum of the loss on [{lo}, {hi}]")

    def derivative(t: Tensor) -> Tensor:
        return grad(lambda u: loss(u.unsqueeze(-1)))(t)

    for _ in range(20):  # Newton on f' = 0, started within a grid spacing of the minimum
        theta = theta - vmap(derivative)(theta) / vmap(grad(derivative))(theta)
    return theta[loss(theta.unsqueeze(-1)).argsort()]


def bayes_objective(loss: SharpFlat | Wall, m: Tensor, var: Tensor) -> Tensor:
    """E_q[bar-ell] - H(q) for 1-D Gaussians q = N(m, var), elementwise (Eq 2).

    Broadcasts ``m`` and ``var``; uses the closed form ``loss.expected``.
    """
    m, var = torch.broadcast_tensors(m, var)
    expected = loss.expected(m.unsqueeze(-1), var.unsqueeze(-1))
    return expected - 0.5 * torch.log(2 * torch.pi * torch.e * var)


def best_gaussian(
    loss: SharpFlat | Wall, means: Tensor, variances: Tensor
) -> tuple[float, float, float]:
    """The 1-D Gaussian with the lowest Bayes objective on a grid of means and variances.

    A reference for the BLR that does not use it: :func:`bayes_objective` on the Cartesian
    grid, the best point kept. The BLR's optimum can only be lower (it is not tied to the grid).

    Args:
        loss: a 1-D landscape with a closed-form ``expected``.
        means: the grid of means, shape (I,).
        variances: the grid of variances, shape (J,), positive.

    Returns:
        (m, var, objective) of the best grid point.

    Raises:
        ValueError: ``means`` or ``variances`` not 1-D, or a variance that is not positive.
    """
    if means.dim() != 1 or variances.dim() != 1:
        raise ValueError("means, variances: each must be a 1-D tensor")
    if not (variances > 0).all():
        raise ValueError("variances must be positive")
    objective = bayes_objective(loss, means.unsqueeze(-1), variances.unsqueeze(0))
    i, j = torch.unravel_index(objective.argmin(), objective.shape)
    return float(means[i]), float(variances[j]), float(objective[i, j])
