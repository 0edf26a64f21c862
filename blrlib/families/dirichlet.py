"""The Dirichlet family on the simplex: the conjugate family of the categorical likelihood.

    import torch
    from blrlib.families import Dirichlet
    q = Dirichlet(3, dtype=torch.float64)
    lam = q.natural_from_concentration(torch.tensor([1.0, 2.0, 3.0]))
    alpha = q.concentration(lam)

theta lies on the simplex in R^K (``dim`` = K, K >= 2); lam = (alpha - 1,),
T(theta) = (log theta,), h(theta) = 1 (with respect to Lebesgue measure on the first K - 1
coordinates, as in torch.distributions) and A(lam) = sum lgamma(alpha) - lgamma(sum alpha), so
mu = psi(alpha) - psi(alpha_0) (Sec 5.1 of Khan & Rue, 2023). A categorical observation y adds
the one-hot vector e_y to lam (Eq 54); grad_mu(-H(q)) = lam (App B).

Derived in :ref:`conj-bayes`; used for the mixture weights in :ref:`vi-vmp`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from blrlib.families._base import ExponentialFamily, Order, Params
from blrlib.families._special import dirichlet_from_mean_log, standard_gamma


class Dirichlet(ExponentialFamily):
    """Dirichlet(alpha) over the K-simplex (Sec 5.1).

    Args:
        dim: the number K >= 2 of categories.
        dtype: floating-point dtype of draws.
        device: device of draws.

    Raises:
        ValueError: ``dim`` < 2.
    """

    order = Order.FIRST

    def __init__(
        self,
        dim: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(dim, dtype=dtype, device=device)
        if dim < 2:
            raise ValueError(f"dim must be >= 2 (the number of categories), got {dim}")

    def natural_shapes(self) -> tuple[tuple[int, ...], ...]:
        """((K,),)."""
        return ((self.dim,),)

    def concentration(self, lam: Params) -> Tensor:
        """alpha = lam + 1, shape (K,)."""
        return lam[0] + 1.0

    def natural_from_concentration(self, alpha: Tensor) -> Params:
        """lam = (alpha - 1,) from a positive concentration (K,).

        Raises:
            ValueError: wrong shape, or an entry that is not finite and positive.
        """
        lam = (torch.as_tensor(alpha, dtype=self.dtype, device=self.device) - 1.0,)
        self.check_natural(lam, "alpha")
        return lam

    def mean_var(self, lam: Params) -> tuple[Tensor, Tensor]:
        """Mean alpha / alpha_0 and marginal variances, each (K,).

        var_k = alpha_k (alpha_0 - alpha_k) / (alpha_0^2 (alpha_0 + 1)), alpha_0 = sum alpha.
        """
        mean, cov = self.mean_cov(lam)
        return mean, torch.diagonal(cov)

    def mean_cov(self, lam: Params) -> tuple[Tensor, Tensor]:
        """Mean p = alpha / alpha_0 (K,) and covariance (diag(p) - p p^T) / (alpha_0 + 1)."""
        alpha = self.concentration(lam)
        total = alpha.sum()
        mean = alpha / total
        cov = (torch.diag(mean) - torch.outer(mean, mean)) / (total + 1.0)
        return mean, cov

    def log_partition(self, lam: Params) -> Tensor:
        """A(lam) = sum_k lgamma(alpha_k) - lgamma(sum_k alpha_k)."""
        alpha = self.concentration(lam)
        return torch.lgamma(alpha).sum() - torch.lgamma(alpha.sum())

    def to_expectation(self, lam: Params) -> Params:
        """mu = (E[log theta],) = (psi(alpha) - psi(alpha_0),)."""
        alpha = self.concentration(lam)
        return (torch.digamma(alpha) - torch.digamma(alpha.sum()),)

    def to_natural(self, mu: Params) -> Params:
        """lam = (alpha - 1,), solving the digamma equations by Newton's method."""
        return (dirichlet_from_mean_log(mu[0]) - 1.0,)

    def sufficient_statistics(self, theta: Tensor) -> Params:
        """T(theta) = (log theta,), shape (..., K)."""
        return (theta.log(),)

    def log_base_measure(self, theta: Tensor) -> Tensor:
        """log h(theta) = 0 on the simplex; shape (...)."""
        return theta.new_zeros(theta.shape[:-1])

    def rsample(self, lam: Params, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """theta = g / sum g with g_k ~ Gamma(alpha_k, 1); shape (n, K), implicit gradients."""
        self._check_n(n)
        g = standard_gamma(self.concentration(lam).expand(n, self.dim), generator)
        return g / g.sum(-1, keepdim=True)

    def neg_entropy_natural_gradient(self, lam: Params) -> Params:
        """grad_mu E_q[log q] = lam, since h is constant (App B, Eq 64)."""
        return tuple(lam)

    def _check_natural_values(self, lam: Params, name: str) -> None:
        if not (lam[0] > -1).all():
            raise ValueError(f"{name}: the concentration alpha = lam[0] + 1 must be > 0")

    def _check_expectation_values(self, mu: Params, name: str) -> None:
        if not (mu[0] < 0).all():
            raise ValueError(f"{name}: E[log theta] must be negative")
