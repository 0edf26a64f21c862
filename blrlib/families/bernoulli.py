"""Independent Bernoulli variables on {0, 1}^P: the family behind BayesBiNN (Sec 4.5).

    import torch
    from blrlib.families import Bernoulli
    q = Bernoulli(4, dtype=torch.float64)
    lam = (torch.zeros(4, dtype=torch.float64),)   # logits: p = 1/2
    theta = q.sample(lam, 10)                      # (10, 4), not differentiable

lam = (logit p,), mu = (p,), T(theta) = theta, h(theta) = 1 and
A(lam) = sum softplus(lam) (Sec 4.5 of Khan & Rue, 2023). The base measure is constant, so the
natural gradient of -H(q) is lam (App B). Draws are discrete: there is no reparameterisation.

Derived in :ref:`binary-bayesbinn`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from blrlib.families._base import ExponentialFamily, Order, Params


class Bernoulli(ExponentialFamily):
    """P independent Bernoulli variables with logits lam (Sec 4.5).

    Args:
        dim: the number P of binary coordinates.
        dtype: floating-point dtype of draws.
        device: device of draws.
    """

    order = Order.FIRST

    def natural_shapes(self) -> tuple[tuple[int, ...], ...]:
        """((P,),)."""
        return ((self.dim,),)

    def log_partition(self, lam: Params) -> Tensor:
        """A(lam) = sum log(1 + exp(lam))."""
        return F.softplus(lam[0]).sum()

    def to_expectation(self, lam: Params) -> Params:
        """mu = (sigmoid(lam),) = (p,)."""
        return (torch.sigmoid(lam[0]),)

    def to_natural(self, mu: Params) -> Params:
        """lam = (log p - log(1 - p),)."""
        return (torch.logit(mu[0]),)

    def sufficient_statistics(self, theta: Tensor) -> Params:
        """T(theta) = (theta,), shape (..., P)."""
        return (theta,)

    def log_base_measure(self, theta: Tensor) -> Tensor:
        """log h(theta) = 0 on {0, 1}^P; shape (...)."""
        return theta.new_zeros(theta.shape[:-1])

    def log_prob(self, lam: Params, theta: Tensor) -> Tensor:
        """<lam, theta> - A(lam); theta (..., P) with entries in {0, 1} -> (...)."""
        self._check_theta(theta)
        return (theta * lam[0] - F.softplus(lam[0])).sum(-1)

    def rsample(self, lam: Params, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Not available: Bernoulli draws are discrete and cannot be reparameterised.

        Raises:
            NotImplementedError: always; use :meth:`sample` (no gradient) or a relaxation.
        """
        raise NotImplementedError(
            "Bernoulli draws are not reparameterisable (theta is discrete); use "
            "Bernoulli.sample for non-differentiable draws"
        )

    def sample(self, lam: Params, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n independent draws in {0, 1}, shape (n, P), detached from the graph."""
        self._check_n(n)
        probs = torch.sigmoid(lam[0].detach()).to(self.dtype).expand(n, self.dim)
        return torch.bernoulli(probs, generator=generator)

    def neg_entropy_natural_gradient(self, lam: Params) -> Params:
        """grad_mu E_q[log q] = lam, since h is constant (App B, Eq 64)."""
        return tuple(lam)

    def _check_expectation_values(self, mu: Params, name: str) -> None:
        if not ((mu[0] > 0) & (mu[0] < 1)).all():
            raise ValueError(f"{name}[0] (the probabilities) must lie strictly in (0, 1)")
