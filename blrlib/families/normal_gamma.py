"""Independent Normal-Gamma pairs (m_d, tau_d): the conjugate family of a Gaussian likelihood
with unknown mean and precision, one pair per dimension.

    import torch
    from blrlib.families import NormalGamma
    q = NormalGamma(1, dtype=torch.float64)                  # theta = (m, tau)
    lam = q.natural_from_moments(torch.tensor([0.0]), torch.tensor([1.0]),
                                 torch.tensor([2.0]), torch.tensor([1.0]))  # m0, kappa, a, b
    m0, kappa, a, b = q.moments(lam)

p(m, tau) = Gamma(tau | a, b) N(m | m0, 1 / (kappa tau)). With theta = (m_1..m_D, tau_1..tau_D)
(``dim`` = 2D), T = (tau m, tau m^2, tau, log tau) per dimension, h = 1 and
lam = (kappa m0, -kappa / 2, -b - kappa m0^2 / 2, a - 1/2),
A(lam) = lgamma(a) - a log b + 1/2 log(2 pi / kappa),
mu = (m0 a / b, 1 / kappa + m0^2 a / b, a / b, psi(a) - log b) (Sec 5.1 of Khan & Rue, 2023).
A Gaussian observation y of dimension d adds (y, -1/2, -y^2/2, 1/2) to lam (Eq 54).
Independent pairs rather than a Normal-Wishart: the chapter's models with unknown covariance
are fitted by EM with a point estimate (delta method, Sec 5.2), which needs no prior over the
covariance; the Normal-Gamma shows the unknown-precision conjugate update with digamma
expectations, which is what a Normal-Wishart adds over the known-variance Gaussian.

Derived in :ref:`conj-bayes`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from blrlib.families._base import ExponentialFamily, Order, Params
from blrlib.families._special import gamma_shape_from_log_gap, standard_gamma


class NormalGamma(ExponentialFamily):
    """D independent Normal-Gamma pairs; theta = (m_1..m_D, tau_1..tau_D) (Sec 5.1).

    Args:
        dim_pairs: the number D of (mean, precision) pairs; ``dim`` is 2D.
        dtype: floating-point dtype of draws.
        device: device of draws.
    """

    order = Order.FIRST

    def __init__(
        self,
        dim_pairs: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if isinstance(dim_pairs, bool) or not isinstance(dim_pairs, int) or dim_pairs < 1:
            raise ValueError(f"dim_pairs must be a positive int, got {dim_pairs!r}")
        super().__init__(2 * dim_pairs, dtype=dtype, device=device)
        self.pairs = dim_pairs

    def natural_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Four entries of shape (D,)."""
        return ((self.pairs,),) * 4

    def moments(self, lam: Params) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(m0, kappa, a, b), each (D,)."""
        kappa = -2.0 * lam[1]
        m0 = lam[0] / kappa
        return m0, kappa, lam[3] + 0.5, -lam[2] - 0.5 * kappa * m0**2

    def natural_from_moments(self, m0: Tensor, kappa: Tensor, a: Tensor, b: Tensor) -> Params:
        """lam from (m0, kappa, a, b), each (D,), with kappa, a, b > 0.

        Raises:
            ValueError: wrong shapes, non-finite values or non-positive kappa, a or b.
        """
        m0, kappa, a, b = (self._as_param(x, (self.pairs,)) for x in (m0, kappa, a, b))
        lam = (kappa * m0, -0.5 * kappa, -b - 0.5 * kappa * m0**2, a - 0.5)
        self.check_natural(lam, "m0, kappa, a, b")
        return lam

    def log_partition(self, lam: Params) -> Tensor:
        """A(lam) = sum lgamma(a) - a log b + 1/2 log(2 pi / kappa)."""
        _, kappa, a, b = self.moments(lam)
        return (torch.lgamma(a) - a * b.log() + 0.5 * (math.log(2 * math.pi) - kappa.log())).sum()

    def to_expectation(self, lam: Params) -> Params:
        """mu = (E[tau m], E[tau m^2], E[tau], E[log tau])."""
        m0, kappa, a, b = self.moments(lam)
        tau = a / b
        return m0 * tau, 1.0 / kappa + m0**2 * tau, tau, torch.digamma(a) - b.log()

    def to_natural(self, mu: Params) -> Params:
        """Invert :meth:`to_expectation` (the shape a by Newton's method, as for the Gamma)."""
        m0 = mu[0] / mu[2]
        kappa = 1.0 / (mu[1] - mu[0] * m0)
        a = gamma_shape_from_log_gap(mu[2].log() - mu[3])
        b = a / mu[2]
        return kappa * m0, -0.5 * kappa, -b - 0.5 * kappa * m0**2, a - 0.5

    def sufficient_statistics(self, theta: Tensor) -> Params:
        """T = (tau m, tau m^2, tau, log tau), each (..., D)."""
        m, tau = theta[..., : self.pairs], theta[..., self.pairs :]
        return tau * m, tau * m**2, tau, tau.log()

    def log_base_measure(self, theta: Tensor) -> Tensor:
        """log h = 0 on R^D x (0, inf)^D; shape (...)."""
        return theta.new_zeros(theta.shape[:-1])

    def rsample(self, lam: Params, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """tau ~ Gamma(a, b), m = m0 + eps / sqrt(kappa tau); shape (n, 2D)."""
        self._check_n(n)
        m0, kappa, a, b = self.moments(lam)
        tau = standard_gamma(a.expand(n, self.pairs), generator) / b
        eps = torch.randn(n, self.pairs, generator=generator, dtype=self.dtype, device=self.device)
        return torch.cat((m0 + eps * (kappa * tau).rsqrt(), tau), dim=-1)

    def neg_entropy_natural_gradient(self, lam: Params) -> Params:
        """grad_mu E_q[log q] = lam, since h is constant (App B, Eq 64)."""
        return tuple(lam)

    def _check_natural_values(self, lam: Params, name: str) -> None:
        if not (lam[1] < 0).all() or not (lam[3] > -0.5).all():
            raise ValueError(f"{name}: need kappa = -2 lam[1] > 0 and a = lam[3] + 1/2 > 0")
        if not (self.moments(lam)[3] > 0).all():
            raise ValueError(f"{name}: the rate b = -lam[2] - lam[0]^2 / (2 kappa) must be > 0")

    def _check_expectation_values(self, mu: Params, name: str) -> None:
        if not ((mu[2] > 0).all() and (mu[3] < mu[2].log()).all()):
            raise ValueError(f"{name}: need E[tau] > 0 and E[log tau] < log E[tau]")
        if not (mu[1] * mu[2] > mu[0] ** 2).all():
            raise ValueError(f"{name}: need E[tau m^2] E[tau] > E[tau m]^2")
