"""Natural gradients: Eq 19 (F^-1 grad_lam = grad_mu), Eq 10-11 and App E surrogates.

All identities are exact in float64 and use the ``assert_close`` defaults (rtol 1e-7,
atol 1e-7), except the Fisher solve, which loses a few digits to the condition number of F.
"""

from __future__ import annotations

import pytest
import torch
from family_cases import ALL, F64, GAUSSIANS, Case, P, random_precision
from torch import Tensor
from torch.testing import assert_close

from blrlib.families import DiagGaussian, FixedCovGaussian, GaussianMixture, Params


def to_free(params: Params, sym: tuple[bool, ...], *, dual: bool) -> Tensor:
    """Flatten to free coordinates: symmetric matrices keep their lower triangle.

    With eta2 symmetric, <eta2, theta theta^T> = sum_i u_ii theta_i^2 + sum_{i>j} u_ij 2 theta_i
    theta_j, so the dual (expectation) coordinate of an off-diagonal u_ij is 2 mu2_ij.
    """
    parts = []
    for x, is_sym in zip(params, sym, strict=True):
        if is_sym:
            i, j = torch.tril_indices(x.shape[-1], x.shape[-1])
            v = x[..., i, j]
            parts.append((torch.where(i == j, v, 2.0 * v) if dual else v).reshape(-1))
        else:
            parts.append(x.reshape(-1))
    return torch.cat(parts)


def from_free(vec: Tensor, like: Params, sym: tuple[bool, ...], *, dual: bool) -> Params:
    """Inverse of :func:`to_free` (differentiable), shaped like ``like``."""
    out, offset = [], 0
    for x, is_sym in zip(like, sym, strict=True):
        if is_sym:
            p = x.shape[-1]
            i, j = torch.tril_indices(p, p)
            batch = x.shape[:-2]
            size = batch.numel() * len(i)
            v = vec[offset : offset + size].reshape(*batch, len(i))
            v = torch.where(i == j, v, 0.5 * v) if dual else v
            flat = vec.new_zeros(*batch, p * p)
            flat = flat.index_copy(-1, i * p + j, v).index_copy(-1, j * p + i, v)
            out.append(flat.reshape(x.shape))
        else:
            size = x.numel()
            out.append(vec[offset : offset + size].reshape(x.shape))
        offset += size
    return tuple(out)


def smooth(mu: Params) -> Tensor:
    """A smooth, non-linear test function of mu."""
    flat = torch.cat([m.reshape(-1) for m in mu])
    weights = torch.linspace(-1.0, 2.0, flat.numel(), dtype=flat.dtype)
    return (weights * torch.sin(flat)).sum() + 0.1 * flat.sum() ** 2


@pytest.mark.parametrize("case", ALL, ids=repr)
def test_natural_gradient_is_inverse_fisher_times_gradient(case: Case) -> None:
    """Eq 19: F(lam)^-1 grad_lam f(mu(lam)) = grad_mu f(mu), with F the Hessian of A(lam).

    The full-Gaussian (and mixture) precision is parameterised by its lower triangle, so that F
    is non-singular; the mixture uses A(lam) = sum_k pi_k A_k(lam_k) (Eq 27).
    """
    family, lam = case.family, case.make_lam()
    u = to_free(lam, case.sym, dual=False).requires_grad_(True)

    def log_partition(free: Tensor) -> Tensor:
        return family.log_partition(from_free(free, lam, case.sym, dual=False))

    fisher = torch.autograd.functional.hessian(log_partition, u)
    mu_of_u = family.to_expectation(from_free(u, lam, case.sym, dual=False))
    (grad_lam,) = torch.autograd.grad(smooth(mu_of_u), u)
    v = to_free(family.to_expectation(lam), case.sym, dual=True).requires_grad_(True)
    (grad_mu,) = torch.autograd.grad(smooth(from_free(v, lam, case.sym, dual=True)), v)
    # Sanity: v are the dual coordinates of u, i.e. grad_u A(u) = v.
    assert_close(torch.autograd.grad(log_partition(u), u)[0], v.detach())
    assert_close(torch.linalg.solve(fisher, grad_lam), grad_mu, rtol=1e-6, atol=1e-6)


def _grad_hess(case: Case) -> tuple[Tensor, Tensor | None]:
    """Random stand-ins for E_q[grad loss] and E_q[Hessian loss] of the right shapes."""
    family = case.family
    if isinstance(family, GaussianMixture):
        return torch.randn(2, P, dtype=F64), random_precision(2) - 0.3 * torch.eye(P, dtype=F64)
    if isinstance(family, DiagGaussian):
        return torch.randn(P, dtype=F64), torch.randn(P, dtype=F64)
    if isinstance(family, FixedCovGaussian):
        return torch.randn(P, dtype=F64), None
    return torch.randn(P, dtype=F64), random_precision() - 0.3 * torch.eye(P, dtype=F64)


@pytest.mark.parametrize("case", GAUSSIANS, ids=repr)
def test_expected_loss_surrogate_gives_eq_10_11(case: Case) -> None:
    """Eq 10-11 (App E for the mixture): grad_mu1 = E[g] - E[H] m and grad_mu2 = E[H] / 2."""
    family, lam = case.family, case.make_lam()
    grad, hess = _grad_hess(case)
    mu = tuple(m.detach().requires_grad_(True) for m in family.to_expectation(lam))
    natural = torch.autograd.grad(family.expected_loss_surrogate(mu, grad, hess), mu)
    mean, _ = family.mean_cov(lam)
    if isinstance(family, FixedCovGaussian):
        expected: Params = (grad,)  # Eq 7 and 35: the covariance is fixed
    elif isinstance(family, DiagGaussian):
        expected = (grad - hess * mean, 0.5 * hess)
    else:  # full Gaussian: Eq 10-11; mixture: the same per component (App E)
        expected = (grad - (hess @ mean.unsqueeze(-1)).squeeze(-1), 0.5 * hess)
    for got, want in zip(natural, expected, strict=True):
        assert_close(got, want)


@pytest.mark.parametrize("case", GAUSSIANS, ids=repr)
def test_surrogate_is_exact_for_quadratic_loss(case: Case) -> None:
    """For loss = b^T theta + theta^T H theta / 2, E_q[loss] = b^T m + tr(H (cov + m m^T)) / 2.

    With the exact Bonnet/Price inputs E_{q(_k)}[grad] = H m(_k) + b and E[Hessian] = H (its
    diagonal for DiagGaussian, nothing for FixedCovGaussian), the surrogate's gradient must equal
    the gradient of the exact expected loss with respect to mu (mixture: weighted by pi_k).
    """
    family, lam = case.family, case.make_lam()
    b, h = torch.randn(P, dtype=F64), random_precision()
    mu = tuple(m.detach().requires_grad_(True) for m in family.to_expectation(lam))
    m_mu, cov_mu = family.mean_cov_from_expectation(mu)
    if isinstance(family, DiagGaussian):
        cov_mu = cov_mu.diag_embed()
    second = cov_mu + m_mu.unsqueeze(-1) * m_mu.unsqueeze(-2)
    exact = m_mu @ b + 0.5 * (h * second).sum((-2, -1))
    hess: Tensor | None = h
    if isinstance(family, GaussianMixture):
        exact = (family.weights * exact).sum()
        hess = h.expand(2, P, P)
    elif isinstance(family, DiagGaussian):
        hess = h.diagonal()
    elif isinstance(family, FixedCovGaussian):
        hess = None
    mean, _ = family.mean_cov(lam)
    grad = (h @ mean.unsqueeze(-1)).squeeze(-1) + b
    surrogate = torch.autograd.grad(family.expected_loss_surrogate(mu, grad, hess), mu)
    for got, want in zip(surrogate, torch.autograd.grad(exact, mu), strict=True):
        assert_close(got, want)


@pytest.mark.parametrize("case", GAUSSIANS, ids=repr)
def test_mean_cov_conversions_agree(case: Case) -> None:
    family, lam = case.family, case.make_lam()
    mean, cov = family.mean_cov(lam)
    mean_mu, cov_mu = family.mean_cov_from_expectation(family.to_expectation(lam))
    assert_close(mean_mu, mean)
    assert_close(cov_mu, cov)
    if isinstance(family, FixedCovGaussian):
        rebuilt = family.natural_from_moments(mean)
    elif isinstance(family, DiagGaussian):
        rebuilt = family.natural_from_moments(mean, cov.reciprocal())
    else:
        rebuilt = family.natural_from_moments(mean, torch.linalg.inv(cov))
    for got, want in zip(rebuilt, lam, strict=True):
        assert_close(got, want)
