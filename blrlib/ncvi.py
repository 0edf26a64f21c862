"""Non-conjugate variational inference by the BLR: global and site forms (Khan & Rue, Sec 5.4).

    from blrlib import families, ncvi
    q = families.Gaussian(X.shape[1], dtype=torch.float64)
    prior = q.natural_from_moments(torch.zeros(P), delta * torch.eye(P))
    factors = ncvi.LogisticFactors(X, y)                       # E_q[log p(y_i | x_i^T w)]
    path = ncvi.run(q, prior, factors, rho=1.0, n_iter=30, form="local")

For p(x) proportional to prod_i f_i(x_i) times a conjugate prior, the BLR step is Eq 58,
lam <- (1 - rho) lam + rho (lam_0 + sum_i lam~_i(mu)),  lam~_i(mu) = grad_mu E_q[log f_i],
and the same iterates come from the site parameters alone (Eq 60),
lam~_i <- (1 - rho) lam~_i + rho lam~_i(mu),  lam = lam_0 + sum_i lam~_i.
At convergence each factor is approximated by exp(<lam~_i, T(x)>) (Eq 59). The expectations
E_q[log f_i] are computed by Gauss-Hermite quadrature of a one-dimensional integral (each factor
depends on x through a scalar a_i = x_i^T w), so the natural gradients, taken by autograd with
respect to mu, are exact to quadrature accuracy; the fixed point is the Gaussian-VI optimum.
With X = I and the prior N(0, K) this is Gaussian-process classification, the conjugate-
computation VI of Khan & Lin (2017).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from blrlib import blr
from blrlib._checks import count
from blrlib.estimators import parse_option
from blrlib.families import Gaussian, Params

__all__ = [
    "Form",
    "LogisticFactors",
    "elbo",
    "gaussian_vi_optimum",
    "global_step",
    "gp_predictive",
    "local_step",
    "predictive_probability",
    "run",
    "site_parameters",
]

Factors = Callable[[Params], Tensor]
"""mu -> E_q[log f_i], one per factor, shape (N,). When every entry of mu has an extra leading
dimension N, factor i is evaluated at the i-th copy (for the per-factor gradients)."""


class Form(str, Enum):
    """Which form of the update: the global parameters (Eq 58) or the site parameters (Eq 60)."""

    GLOBAL = "global"
    LOCAL = "local"


def _gauss_hermite(n: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    x, w = np.polynomial.hermite_e.hermegauss(n)  # weight exp(-x^2 / 2)
    return torch.as_tensor(x, dtype=dtype), torch.as_tensor(w / np.sqrt(2 * np.pi), dtype=dtype)


class LogisticFactors:
    """f_i(w) = p(y_i | w) = sigmoid(x_i^T w)^y_i (1 - sigmoid(x_i^T w))^(1 - y_i).

    Calling it with mu = (m, S^-1 + m m^T) of a Gaussian q(w) returns
    E_q[log f_i] = y_i E[a_i] - E[softplus(a_i)] with a_i ~ N(x_i^T m, x_i^T S^-1 x_i), by
    ``n_points``-node Gauss-Hermite quadrature (error below 1e-10 for the variances here).

    Args:
        X: inputs (N, P); the identity for a Gaussian process (then w = f).
        y: labels (N,) in {0, 1}.
        n_points: quadrature nodes.

    Raises:
        ValueError: shapes that do not match, non-finite inputs, labels outside {0, 1}.
    """

    def __init__(self, X: Tensor, y: Tensor, *, n_points: int = 64) -> None:
        if not isinstance(X, Tensor) or X.dim() != 2 or not torch.isfinite(X).all():
            raise ValueError("X must be a finite tensor of shape (N, P)")
        if not isinstance(y, Tensor) or tuple(y.shape) != (X.shape[0],):
            raise ValueError(f"y must be a tensor of shape ({X.shape[0]},)")
        if not ((y == 0) | (y == 1)).all():
            raise ValueError("y: labels must be 0 or 1")
        self.X, self.y = X, y.to(X.dtype)
        nodes, weights = _gauss_hermite(count(n_points, "n_points"), X.dtype)
        self.nodes, self.weights = nodes.to(X.device), weights.to(X.device)

    def marginals(self, mu: Params) -> tuple[Tensor, Tensor]:
        """Mean and variance of a_i = x_i^T w under q, each (N,) (row i of batched mu for i)."""
        m, second = mu
        if m.dim() == 2:  # one copy of mu per factor
            mean = (m * self.X).sum(-1)
            var = torch.einsum("np,npq,nq->n", self.X, second, self.X) - mean**2
        else:
            mean = self.X @ m
            var = ((self.X @ second) * self.X).sum(-1) - mean**2
        return mean, var.clamp_min(0.0)

    def expected_log_lik(self, mean: Tensor, var: Tensor) -> Tensor:
        """E[y a - softplus(a)] for a ~ N(mean, var), elementwise."""
        a = mean.unsqueeze(-1) + var.sqrt().unsqueeze(-1) * self.nodes
        return self.y * mean - (F.softplus(a) * self.weights).sum(-1)

    def __call__(self, mu: Params) -> Tensor:
        return self.expected_log_lik(*self.marginals(mu))


def site_parameters(family: Gaussian, lam: Params, factors: Factors) -> Params:
    """The site parameters lam~_i(mu) = grad_mu E_q[log f_i] of Eq 58, all i at once.

    Autograd with respect to N copies of mu, one per factor: the same derivative that
    ``blr.step`` takes of the sum (tested), kept apart per factor.

    Returns:
        A tuple shaped like ``lam`` with a leading dimension N.
    """
    mu = family.to_expectation(tuple(p.detach() for p in lam))
    n = factors(mu).shape[-1]
    copies = tuple(m.expand(n, *m.shape).clone().requires_grad_(True) for m in mu)
    return torch.autograd.grad(factors(copies).sum(), copies)  # factor i sees copy i only


def global_step(
    family: Gaussian, lam: Params, factors: Factors, *, prior: Params, rho: float
) -> Params:
    """Eq 58: lam <- (1 - rho) lam + rho (lam_0 + sum_i lam~_i(mu)), one ``blr.step``."""
    return blr.step(
        family,
        lam,
        rho=rho,
        prior=prior,
        estimator="exact",
        expected_loss=lambda mu: -factors(mu).sum(),
    )


def local_step(
    family: Gaussian, sites: Params, factors: Factors, *, prior: Params, rho: float
) -> tuple[Params, Params]:
    """Eq 60: lam~_i <- (1 - rho) lam~_i + rho lam~_i(mu_t), then lam = lam_0 + sum_i lam~_i.

    Returns:
        (new sites, new lam).
    """
    blr._check_rho(rho)
    lam = tuple(p0 + s.sum(0) for p0, s in zip(prior, sites, strict=True))
    new = site_parameters(family, lam, factors)
    sites = tuple((1 - rho) * s + rho * g for s, g in zip(sites, new, strict=True))
    lam = tuple(p0 + s.sum(0) for p0, s in zip(prior, sites, strict=True))
    family.check_natural(lam, "lam")
    return sites, lam


def run(
    family: Gaussian,
    prior: Params,
    factors: Factors,
    *,
    rho: float,
    n_iter: int,
    form: Form | str = Form.GLOBAL,
) -> dict[str, list]:
    """Iterate Eq 58 (``form="global"``) or Eq 60 (``"local"``) from q = the prior.

    Returns:
        ``{"lam": [lam_0, ...], "sites": final site parameters (local form) or None}``.
    """
    form = parse_option(form, Form, "form")
    family.check_natural(prior, "prior")
    count(n_iter, "n_iter", minimum=0)
    lams, sites = [prior], None
    if form is Form.LOCAL:
        n = factors(family.to_expectation(prior)).shape[-1]
        sites = tuple(torch.zeros(n, *p.shape, dtype=p.dtype) for p in prior)
    for _ in range(n_iter):
        if form is Form.GLOBAL:
            lams.append(global_step(family, lams[-1], factors, prior=prior, rho=rho))
        else:
            sites, lam = local_step(family, sites, factors, prior=prior, rho=rho)
            lams.append(lam)
    return {"lam": lams, "sites": sites}


def elbo(family: Gaussian, lam: Params, prior: Params, factors: Factors) -> Tensor:
    """sum_i E_q[log f_i] - KL(q || prior), the negative Bayes objective of Eq 2."""
    return factors(family.to_expectation(lam)).sum() - family.kl(lam, prior)


def gaussian_vi_optimum(
    family: Gaussian, prior: Params, factors: Factors, *, max_iter: int = 500
) -> Params:
    """The Gaussian q maximising :func:`elbo`, by L-BFGS over (m, Cholesky factor of S^-1).

    A baseline independent of the BLR (a different parametrisation and optimiser); started from
    the prior and run to a gradient norm of 1e-12.
    """
    m0, cov0 = family.mean_cov(prior)
    m = m0.clone().requires_grad_(True)
    chol = torch.linalg.cholesky(cov0).contiguous().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [m, chol],
        max_iter=max_iter,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        line_search_fn="strong_wolfe",
        history_size=50,
    )

    def closure() -> Tensor:
        opt.zero_grad()
        lower = chol.tril()
        cov = lower @ lower.T
        mu = (m, cov + torch.outer(m, m))
        lam = family.to_natural(mu)
        loss = -(factors(mu).sum() - family.kl(lam, prior))
        loss.backward()
        return loss

    opt.step(closure)
    lower = chol.detach().tril()
    return family.natural_from_moments(m.detach(), torch.cholesky_inverse(lower))


def predictive_probability(mean: Tensor, var: Tensor, *, n_points: int = 64) -> Tensor:
    """E[sigmoid(a)] for a ~ N(mean, var) by Gauss-Hermite quadrature, elementwise."""
    nodes, weights = _gauss_hermite(count(n_points, "n_points"), mean.dtype)
    a = mean.unsqueeze(-1) + var.clamp_min(0).sqrt().unsqueeze(-1) * nodes
    return (torch.sigmoid(a) * weights).sum(-1)


def gp_predictive(
    family: Gaussian, lam: Params, k_train: Tensor, k_cross: Tensor, k_test_diag: Tensor
) -> tuple[Tensor, Tensor]:
    """Mean and variance of f(x*) under q(f) = N(m, S) on the training inputs and the GP prior.

    mean = k*^T K^-1 m,  var = k** - k*^T K^-1 (K - S) K^-1 k* (Rasmussen & Williams, Eq 3.21).

    Args:
        family, lam: q(f) over the N training values.
        k_train: K (N, N); k_cross: k(X, X*) (N, M); k_test_diag: k(x*, x*) (M,).
    """
    m, cov = family.mean_cov(lam)
    a = torch.linalg.solve(k_train, k_cross)
    return a.T @ m, k_test_diag - ((k_train - cov) @ a * a).sum(0)
