"""Independent Beta variables on (0, 1)^P: the conjugate family of the Bernoulli likelihood.

    import torch
    from blrlib.families import Beta
    q = Beta(2, dtype=torch.float64)
    lam = q.natural_from_shapes(torch.tensor([2.0, 1.0]), torch.tensor([3.0, 1.0]))
    a, b = q.shapes(lam)

lam = (a - 1, b - 1), T(theta) = (log theta, log(1 - theta)), h(theta) = 1 and
A(lam) = log B(a, b), so mu = (psi(a) - psi(a + b), psi(b) - psi(a + b)) (Sec 5.1 of Khan &
Rue, 2023). A Bernoulli observation y adds (y, 1 - y) to lam: Bayes' rule is an addition of
natural parameters (Eq 54). The base measure is constant, so grad_mu(-H(q)) = lam (App B).

Derived in :ref:`conj-bayes`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from blrlib.families._base import ExponentialFamily, Order, Params
from blrlib.families._special import dirichlet_from_mean_log, standard_gamma


class Beta(ExponentialFamily):
    """P independent Beta(a_p, b_p) variables (Sec 5.1).

    Args:
        dim: the number P of coordinates.
        dtype: floating-point dtype of draws.
        device: device of draws.
    """

    order = Order.FIRST

    def natural_shapes(self) -> tuple[tuple[int, ...], ...]:
        """((P,), (P,))."""
        return ((self.dim,), (self.dim,))

    def shapes(self, lam: Params) -> tuple[Tensor, Tensor]:
        """The shape parameters (a, b) = (lam1 + 1, lam2 + 1), each (P,)."""
        return lam[0] + 1.0, lam[1] + 1.0

    def natural_from_shapes(self, a: Tensor | float, b: Tensor | float) -> Params:
        """lam = (a - 1, b - 1) from positive shapes (P,) (Python numbers when P = 1).

        Raises:
            ValueError: wrong shape, or a shape that is not finite and positive.
        """
        lam = tuple(self._as_param(x, (self.dim,)) - 1.0 for x in (a, b))
        self.check_natural(lam, "a, b")
        return lam

    def mean_var(self, lam: Params) -> tuple[Tensor, Tensor]:
        """Mean a / (a + b) and variance a b / ((a + b)^2 (a + b + 1)), each (P,)."""
        a, b = self.shapes(lam)
        total = a + b
        return a / total, a * b / (total**2 * (total + 1.0))

    def log_partition(self, lam: Params) -> Tensor:
        """A(lam) = sum log B(a, b) = sum lgamma(a) + lgamma(b) - lgamma(a + b)."""
        a, b = self.shapes(lam)
        return (torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)).sum()

    def to_expectation(self, lam: Params) -> Params:
        """mu = (E[log theta], E[log(1 - theta)]) = (psi(a) - psi(a+b), psi(b) - psi(a+b))."""
        a, b = self.shapes(lam)
        total = torch.digamma(a + b)
        return torch.digamma(a) - total, torch.digamma(b) - total

    def to_natural(self, mu: Params) -> Params:
        """lam = (a - 1, b - 1), solving the digamma equations by Newton's method."""
        ab = dirichlet_from_mean_log(torch.stack(mu, dim=-1))
        return ab[..., 0] - 1.0, ab[..., 1] - 1.0

    def sufficient_statistics(self, theta: Tensor) -> Params:
        """T(theta) = (log theta, log(1 - theta)), each (..., P)."""
        return theta.log(), torch.log1p(-theta)

    def log_base_measure(self, theta: Tensor) -> Tensor:
        """log h(theta) = 0 on (0, 1)^P; shape (...)."""
        return theta.new_zeros(theta.shape[:-1])

    def rsample(self, lam: Params, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """theta = g_a / (g_a + g_b) with g ~ Gamma(., 1); shape (n, P), implicit gradients."""
        self._check_n(n)
        a, b = self.shapes(lam)
        g = standard_gamma(torch.stack((a, b)).unsqueeze(1).expand(2, n, self.dim), generator)
        return g[0] / (g[0] + g[1])

    def neg_entropy_natural_gradient(self, lam: Params) -> Params:
        """grad_mu E_q[log q] = lam, since h is constant (App B, Eq 64)."""
        return tuple(lam)

    def _check_natural_values(self, lam: Params, name: str) -> None:
        if not ((lam[0] > -1) & (lam[1] > -1)).all():
            raise ValueError(f"{name}: the Beta shapes a = lam[0] + 1, b = lam[1] + 1 must be > 0")

    def _check_expectation_values(self, mu: Params, name: str) -> None:
        if not ((mu[0] < 0) & (mu[1] < 0)).all():
            raise ValueError(f"{name}: E[log theta] and E[log(1 - theta)] must be negative")
