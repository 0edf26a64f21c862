"""The Fig 1 and Sec 3.2 landscapes: closed-form expectations, minima and the grid posterior."""

from __future__ import annotations

import math

import pytest
import torch
from numpy.polynomial.hermite_e import hermegauss
from scipy.optimize import minimize, minimize_scalar
from torch.func import grad, hessian
from torch.testing import assert_close

from blrlib.landscapes import (
    DoubleWell,
    SharpFlat,
    Wall,
    bayes_objective,
    best_gaussian,
    grid_posterior,
    local_minima,
)

F64 = torch.float64


def _gauss_hermite(n: int = 80) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes x, weights w: sum_i w_i f(x_i) = E_{N(0, 1)}[f] for polynomials of degree < 2n."""
    x, w = hermegauss(n)
    return torch.tensor(x, dtype=F64), torch.tensor(w, dtype=F64) / math.sqrt(2 * math.pi)


def _quadrature(loss, m: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """E_{N(m, diag(var))}[loss] by the tensor product of 80-node Gauss-Hermite rules (80^P points).

    The separability of the landscapes is not used: the loss is called on P-dimensional points.
    """
    x, w = _gauss_hermite()
    dim = m.numel()
    nodes = torch.cartesian_prod(*[x] * dim).reshape(-1, dim)
    weights = torch.cartesian_prod(*[w] * dim).reshape(-1, dim).prod(-1)
    return (weights * loss(m + var.sqrt() * nodes)).sum()


# (m, var) pairs at which the 80-node rule has converged to rounding: the integrands are entire,
# and each bump of width w spans at least w / sqrt(var) >= 0.45 standard deviations (or lies
# more than 6 standard deviations away). Wider Gaussians on the sharp bump (width 0.1) need more
# nodes, which is a property of the quadrature, not of ``expected``.
SCALAR_CASES = {
    "sharp-flat": (SharpFlat(), [(-1.0, 0.01), (-0.95, 0.004), (0.3, 0.05), (0.9, 0.02)]),
    "sharp-flat-scaled": (SharpFlat(scale=3.0), [(-1.1, 0.03), (1.1, 0.1), (4.0, 0.5)]),
    "sharp-flat-wide": (SharpFlat(widths=(0.5, 1.5)), [(-1.0, 0.5), (2.0, 1.0), (0.0, 0.2)]),
    "wall": (Wall(), [(-1.0, 0.01), (0.3, 0.05), (0.76, 0.2), (1.1, 0.1), (1.3, 0.25)]),
    "wall-scaled": (Wall(scale=2.0, steepness=4.0), [(0.5, 0.25), (1.5, 1.0)]),
}


@pytest.mark.parametrize("name", sorted(SCALAR_CASES))
def test_scalar_expectation_is_gauss_hermite(name):
    """E_N(m, var)[f] in closed form equals the 80-node quadrature to 1e-10.

    At these points 80 and 200 nodes agree to 2e-12 absolute and 1e-15 relative (the wall
    reaches values of order 1e4), so 1e-10 (absolute or relative) leaves room for rounding only.
    """
    loss, cases = SCALAR_CASES[name]
    for m, var in cases:
        m_, var_ = torch.tensor([m], dtype=F64), torch.tensor([var], dtype=F64)
        assert_close(loss.expected(m_, var_), _quadrature(loss, m_, var_), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("loss", [SharpFlat(), Wall()], ids=["sharp-flat", "wall"])
def test_separable_expectation_is_gauss_hermite(loss):
    """In 2-D, with one variance per coordinate, against the 80^2-point product rule (1e-10).

    Each coordinate is a case of the scalar test, where the rule has converged to 1e-13.
    """
    m = torch.tensor([-1.0, 1.1], dtype=F64)
    var = torch.tensor([0.01, 0.1], dtype=F64)
    assert_close(loss.expected(m, var), _quadrature(loss, m, var), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_double_well_minima(dim):
    """The 2^P corners are distinct stationary points with positive-definite Hessians.

    The gradient at +-1 is exactly zero in floating point; the Hessian is 8 * scale * I.
    """
    loss = DoubleWell()
    minima = loss.minima(dim)
    assert minima.shape == (2**dim, dim)
    assert len({tuple(row) for row in minima.tolist()}) == 2**dim
    for theta in minima:
        assert_close(grad(loss)(theta), torch.zeros(dim, dtype=F64), rtol=0, atol=1e-12)
        assert torch.linalg.eigvalsh(hessian(loss)(theta)).min() > 0
    assert_close(
        torch.linalg.eigvalsh(hessian(loss)(minima[0])),
        torch.full((dim,), 8.0 * loss.scale, dtype=F64),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize(
    ("loss", "lo", "hi"),
    [(SharpFlat(), -8.0, 10.0), (Wall(), -6.0, 2.5)],
    ids=["sharp-flat", "wall"],
)
def test_grid_posterior_is_normalised(loss, lo, hi):
    """The density integrates to 1 by the trapezoidal rule (1e-6), and log Z is resolved.

    The integral is 1 up to rounding by construction; a 4x finer grid changes log Z by less than
    1e-6, so the default 4001 points resolve the sharp bump (width 0.1, spacing 0.0045).
    """
    grid, density, log_z = grid_posterior(loss, lo, hi)
    assert grid.shape == density.shape == (4001,)
    assert_close(torch.trapezoid(density, grid), torch.tensor(1.0, dtype=F64), rtol=0, atol=1e-6)
    _, _, log_z_fine = grid_posterior(loss, lo, hi, n=16001)
    assert_close(log_z, log_z_fine, rtol=0, atol=1e-6)


# ------------------------------------------------------------------- references for the BLR


@pytest.mark.parametrize(
    ("loss", "lo", "hi", "n_minima"),
    [(SharpFlat(), -2.0, 5.0, 2), (Wall(), -2.0, 1.1, 1), (SharpFlat(scale=20.0), -2.0, 5.0, 2)],
    ids=["sharp-flat", "wall", "sharp-flat-scaled"],
)
def test_local_minima_are_scipy_minima(loss, lo, hi, n_minima):
    """Each local minimiser is scipy's bounded Brent minimum of its interval (1e-7: Brent stops
    at 1e-10 in theta, the Newton refinement at rounding); the first is the lowest."""
    minima = local_minima(loss, lo, hi)
    assert minima.shape == (n_minima,)
    values = loss(minima.unsqueeze(-1))
    assert (values[:-1] <= values[1:]).all()
    ordered = minima.sort().values.tolist()
    cuts = [lo, *((a + b) / 2 for a, b in zip(ordered[:-1], ordered[1:], strict=True)), hi]
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        res = minimize_scalar(
            lambda t: float(loss(torch.tensor([t], dtype=F64))),
            bounds=(a, b),
            method="bounded",
            options={"xatol": 1e-10},
        )
        assert (minima - res.x).abs().min() < 1e-7


def test_best_gaussian_is_a_grid_point_near_the_optimum():
    """The grid optimum over (m, var) is within a grid spacing of scipy's Nelder-Mead optimum of
    the same objective over (m, log var), and no lower than it (it is restricted to the grid)."""
    loss = Wall()
    means = torch.linspace(-1.5, 1.5, 301, dtype=F64)
    variances = torch.logspace(-2.5, 0.5, 301, dtype=F64)
    m, var, objective = best_gaussian(loss, means, variances)

    def f(x):
        return float(bayes_objective(loss, torch.tensor(x[0]), torch.tensor(math.exp(x[1]))))

    res = minimize(f, [0.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14})
    assert abs(m - res.x[0]) <= 0.01
    assert abs(math.log(var) - res.x[1]) <= 3.0 / 300 * math.log(10)
    assert res.fun <= objective <= res.fun + 1e-3


def test_bayes_objective_is_expected_loss_minus_entropy():
    """E_q[bar-ell] - H(q), with the Gaussian entropy from torch.distributions (1e-12)."""
    loss = SharpFlat()
    m = torch.tensor([-1.0, 0.3, 2.5], dtype=F64)
    var = torch.tensor([0.01, 0.2, 1.0], dtype=F64)
    entropy = torch.distributions.Normal(m, var.sqrt()).entropy()
    expected = torch.stack(
        [loss.expected(a.view(1), b.view(1)) for a, b in zip(m, var, strict=True)]
    )
    assert_close(bayes_objective(loss, m, var), expected - entropy, rtol=1e-12, atol=1e-12)


def test_reference_input_checks():
    with pytest.raises(ValueError, match="lo, hi"):
        local_minima(Wall(), 1.0, 0.0)
    with pytest.raises(ValueError, match="n"):
        local_minima(Wall(), 0.0, 1.0, n=2)
    with pytest.raises(ValueError, match="no interior minimum"):
        local_minima(Wall(), -2.0, 0.0)  # the loss decreases all the way to 0
    with pytest.raises(ValueError, match="variances"):
        best_gaussian(Wall(), torch.zeros(3), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="1-D"):
        best_gaussian(Wall(), torch.zeros(3, 1), torch.ones(2))
