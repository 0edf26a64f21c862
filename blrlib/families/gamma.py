"""Independent Gamma variables on (0, inf)^P: the conjugate family of the Poisson likelihood.

    import torch
    from blrlib.families import Gamma
    q = Gamma(1, dtype=torch.float64)
    lam = q.natural_from_shape_rate(torch.tensor([2.0]), torch.tensor([0.5]))
    a, b = q.shape_rate(lam)

lam = (a - 1, -b), T(theta) = (log theta, theta), h(theta) = 1 and
A(lam) = lgamma(a) - a log b, so mu = (psi(a) - log b, a / b) (Sec 5.1 of Khan & Rue, 2023).
A Poisson count y adds (y, -1) to lam (Eq 54). The base measure is constant, so
grad_mu(-H(q)) = lam (App B).

Derived in :ref:`conj-bayes`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from blrlib.families._base import ExponentialFamily, Order, Params
from blrlib.families._special import gamma_shape_from_log_gap, standard_gamma


class Gamma(ExponentialFamily):
    """P independent Gamma(a_p, b_p) variables, b the rate (Sec 5.1).

    Args:
        dim: the number P of coordinates.
        dtype: floating-point dtype of draws.
        device: device of draws.
    """

    order = Order.FIRST

    def natural_shapes(self) -> tuple[tuple[int, ...], ...]:
        """((P,), (P,))."""
        return ((self.dim,), (self.dim,))

    def shape_rate(self, lam: Params) -> tuple[Tensor, Tensor]:
        """(a, b) = (lam1 + 1, -lam2), each (P,)."""
        return lam[0] + 1.0, -lam[1]

    def natural_from_shape_rate(self, a: Tensor | float, b: Tensor | float) -> Params:
        """lam = (a - 1, -b) from a positive shape and rate (P,) (Python numbers when P = 1).

        Raises:
            ValueError: wrong shape, or a shape or rate that is not finite and positive.
        """
        a, b = (self._as_param(x, (self.dim,)) for x in (a, b))
        lam = (a - 1.0, -b)
        self.check_natural(lam, "a, b")
        return lam

    def mean_var(self, lam: Params) -> tuple[Tensor, Tensor]:
        """Mean a / b and variance a / b^2, each (P,)."""
        a, b = self.shape_rate(lam)
        return a / b, a / b**2

    def log_partition(self, lam: Params) -> Tensor:
        """A(lam) = sum lgamma(a) - a log b."""
        a, b = self.shape_rate(lam)
        return (torch.lgamma(a) - a * b.log()).sum()

    def to_expectation(self, lam: Params) -> Params:
        """mu = (E[log theta], E[theta]) = (psi(a) - log b, a / b)."""
        a, b = self.shape_rate(lam)
        return torch.digamma(a) - b.log(), a / b

    def to_natural(self, mu: Params) -> Params:
        """lam = (a - 1, -b): a solves log a - psi(a) = log mu2 - mu1 (Newton), b = a / mu2."""
        a = gamma_shape_from_log_gap(mu[1].log() - mu[0])
        return a - 1.0, -a / mu[1]

    def sufficient_statistics(self, theta: Tensor) -> Params:
        """T(theta) = (log theta, theta), each (..., P)."""
        return theta.log(), theta

    def log_base_measure(self, theta: Tensor) -> Tensor:
        """log h(theta) = 0 on (0, inf)^P; shape (...)."""
        return theta.new_zeros(theta.shape[:-1])

    def rsample(self, lam: Params, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """theta = g / b with g ~ Gamma(a, 1); shape (n, P), implicit gradients."""
        self._check_n(n)
        a, b = self.shape_rate(lam)
        return standard_gamma(a.expand(n, self.dim), generator) / b

    def neg_entropy_natural_gradient(self, lam: Params) -> Params:
        """grad_mu E_q[log q] = lam, since h is constant (App B, Eq 64)."""
        return tuple(lam)

    def _check_natural_values(self, lam: Params, name: str) -> None:
        if not ((lam[0] > -1) & (lam[1] < 0)).all():
            raise ValueError(
                f"{name}: the Gamma shape a = lam[0] + 1 and rate b = -lam[1] must be > 0"
            )

    def _check_expectation_values(self, mu: Params, name: str) -> None:
        if not ((mu[1] > 0) & (mu[0] < mu[1].log())).all():
            raise ValueError(f"{name}: need E[theta] > 0 and E[log theta] < log E[theta]")
