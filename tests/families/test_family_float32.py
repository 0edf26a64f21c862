"""The exponential-family identities again in float32, torch's default dtype for users.

The table of tests/families/family_cases.py is built in float64; here six families are built
in the dtype of ``float_dtype`` (float64, then float32) and checked against torch.distributions
(independent code): lambda -> mu -> lambda, grad A(lambda) = mu, log-density and entropy, and
that every output keeps the family's dtype (no silent promotion to float64).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.distributions as D
from torch.testing import assert_close

from blrlib import families

P = 3


def _spd() -> torch.Tensor:
    a = torch.randn(P, P)
    return a @ a.T / P + 0.5 * torch.eye(P)


def _gaussian():
    q, m, prec = families.Gaussian(P), torch.randn(P), _spd()
    return q, q.natural_from_moments(m, prec), D.MultivariateNormal(m, precision_matrix=prec)


def _diag():
    q, m, prec = families.DiagGaussian(P), torch.randn(P), torch.rand(P) + 0.5
    return q, q.natural_from_moments(m, prec), D.Independent(D.Normal(m, prec.rsqrt()), 1)


def _beta():
    q, a, b = families.Beta(P), torch.rand(P) + 1.0, torch.rand(P) + 2.0
    return q, q.natural_from_shapes(a, b), D.Independent(D.Beta(a, b), 1)


def _gamma():
    q, a, b = families.Gamma(P), torch.rand(P) + 1.0, torch.rand(P) + 0.5
    return q, q.natural_from_shape_rate(a, b), D.Independent(D.Gamma(a, b), 1)


def _dirichlet():
    q, alpha = families.Dirichlet(P), torch.rand(P) + 1.0
    return q, q.natural_from_concentration(alpha), D.Dirichlet(alpha)


def _bernoulli():
    q, logits = families.Bernoulli(P), torch.randn(P)
    return q, (logits,), D.Independent(D.Bernoulli(logits=logits), 1)


CASES: dict[str, Callable[[], tuple]] = {
    "gaussian": _gaussian, "diag": _diag, "beta": _beta, "gamma": _gamma,
    "dirichlet": _dirichlet, "bernoulli": _bernoulli,
}  # fmt: skip


def _tolerance(dtype: torch.dtype) -> dict[str, float]:
    """float64: assert_close's defaults. float32: 1e-4, about 1000 eps of float32, the error of
    a 3x3 Cholesky inverse or lgamma/digamma differences of condition ~10; a wrong formula is
    off by far more."""
    return {} if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", CASES)
def test_identities_in_the_default_dtype(name, float_dtype):
    q, lam, ref = CASES[name]()
    tol = _tolerance(float_dtype)
    assert q.dtype == float_dtype and all(t.dtype == float_dtype for t in lam)
    mu = q.to_expectation(lam)
    for back, orig in zip(q.to_natural(mu), lam, strict=True):
        assert back.dtype == float_dtype
        assert_close(back, orig, **tol)
    lam_g = tuple(t.detach().clone().requires_grad_(True) for t in lam)
    grads = torch.autograd.grad(q.log_partition(lam_g), lam_g)
    for g, m in zip(grads, mu, strict=True):
        assert_close(g, m, **tol)
    theta = ref.sample((5,))
    assert_close(q.log_prob(lam, theta), ref.log_prob(theta), **tol)
    entropy = q.entropy(lam)
    assert entropy.dtype == float_dtype
    assert_close(entropy, ref.entropy(), **tol)
