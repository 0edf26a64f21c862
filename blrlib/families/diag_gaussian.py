"""The diagonal Gaussian family N(m, diag(s)^-1): the BLR gives RMSprop/Adam-like updates.

    import torch
    from blrlib.families import DiagGaussian
    q = DiagGaussian(3, dtype=torch.float64)
    lam = q.natural_from_moments(torch.zeros(3), torch.ones(3))  # (s * m, -s / 2)
    m, var = q.mean_cov(lam)                                      # var = 1 / s, shape (3,)

The mean-field version of Eq 9 of Khan & Rue (2023), elementwise: lam = (s m, -s/2),
mu = (m, 1/s + m^2), T(theta) = (theta, theta^2), h(theta) = (2 pi)^(-P/2) and
A(lam) = sum(1/2 s m^2 - 1/2 log s). The natural gradient of -H(q) is lam (App B); with the
expected gradient and Hessian diagonal the BLR gives the updates of Sec 4.2 and 4.4.
"""

from __future__ import annotations

import torch
from torch import Tensor

from blrlib.families._base import ExponentialFamily, Order, Params, inner
from blrlib.families._gaussian_math import LOG_2PI


class DiagGaussian(ExponentialFamily):
    """Gaussian with free mean and diagonal precision s (P,) (Sec 4.2).

    Args:
        dim: the dimension P of theta.
        dtype: floating-point dtype of draws and converted inputs.
        device: device of draws and converted inputs.
    """

    order = Order.DIAG

    def natural_shapes(self) -> tuple[tuple[int, ...], ...]:
        """((P,), (P,))."""
        return ((self.dim,), (self.dim,))

    @staticmethod
    def _mean_precision(lam: Params) -> tuple[Tensor, Tensor]:
        prec = -2.0 * lam[1]
        return lam[0] / prec, prec

    def log_partition(self, lam: Params) -> Tensor:
        """A(lam) = sum(1/2 s m^2 - 1/2 log s) = sum(-eta1^2 / (4 eta2) - 1/2 log(-2 eta2))."""
        mean, prec = self._mean_precision(lam)
        return (0.5 * lam[0] * mean - 0.5 * prec.log()).sum()

    def to_expectation(self, lam: Params) -> Params:
        """mu = (m, 1/s + m^2) (Eq 9, elementwise)."""
        mean, prec = self._mean_precision(lam)
        return mean, prec.reciprocal() + mean * mean

    def to_natural(self, mu: Params) -> Params:
        """lam = (s m, -s/2) with 1/s = mu2 - mu1^2."""
        mean, var = self.mean_cov_from_expectation(mu)
        return mean / var, -0.5 / var

    def sufficient_statistics(self, theta: Tensor) -> Params:
        """T(theta) = (theta, theta^2), both of shape (..., P)."""
        return theta, theta * theta

    def log_base_measure(self, theta: Tensor) -> Tensor:
        """log h(theta) = -P/2 log(2 pi), broadcast to shape (...)."""
        return theta.new_full(theta.shape[:-1], -0.5 * self.dim * LOG_2PI)

    def _expected_log_base_measure(self, lam: Params) -> Tensor:
        return lam[0].new_tensor(-0.5 * self.dim * LOG_2PI)

    def log_prob(self, lam: Params, theta: Tensor) -> Tensor:
        """sum_i log N(theta_i | m_i, 1/s_i); theta (..., P) -> (...)."""
        self._check_theta(theta)
        mean, prec = self._mean_precision(lam)
        quad = prec * (theta - mean) ** 2
        return 0.5 * (prec.log() - LOG_2PI - quad).sum(-1)

    def entropy(self, lam: Params) -> Tensor:
        """H(q) = sum 1/2 log(2 pi e / s)."""
        prec = -2.0 * lam[1]
        return 0.5 * (1.0 + LOG_2PI - prec.log()).sum()

    def rsample(self, lam: Params, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """theta = m + eps / sqrt(s) with eps ~ N(0, I); shape (n, P)."""
        eps = self._randn(n, generator)
        mean, prec = self._mean_precision(lam)
        return mean + eps * prec.rsqrt()

    def neg_entropy_natural_gradient(self, lam: Params) -> Params:
        """grad_mu E_q[log q] = lam, since h is constant (App B, Eq 64)."""
        return tuple(lam)

    def mean_cov(self, lam: Params) -> tuple[Tensor, Tensor]:
        """(m, 1/s): the mean and the variances, both of shape (P,)."""
        mean, prec = self._mean_precision(lam)
        return mean, prec.reciprocal()

    def mean_cov_from_expectation(self, mu: Params) -> tuple[Tensor, Tensor]:
        """(m, var) = (mu1, mu2 - mu1^2), both (P,), differentiable in mu."""
        return mu[0], mu[1] - mu[0] * mu[0]

    def natural_from_moments(self, m: Tensor, precision: Tensor) -> Params:
        """lam = (s m, -s/2) from a mean (P,) and positive precisions s (P,).

        Raises:
            ValueError: wrong shapes, non-finite values or non-positive precisions.
        """
        m = torch.as_tensor(m, dtype=self.dtype, device=self.device)
        precision = torch.as_tensor(precision, dtype=self.dtype, device=self.device)
        for name, value in (("m", m), ("precision", precision)):
            if tuple(value.shape) != (self.dim,):
                raise ValueError(f"{name} must have shape ({self.dim},), got {tuple(value.shape)}")
            if not torch.isfinite(value).all():
                raise ValueError(f"{name} must be finite")
        if not (precision > 0).all():
            raise ValueError("precision must be positive")
        return precision * m, -0.5 * precision

    def expected_loss_surrogate(self, mu: Params, grad: Tensor, hess: Tensor | None) -> Tensor:
        """A scalar function of mu whose gradient is the natural gradient of E_q[loss].

        Implements the diagonal version of Eq 10-11 of Khan & Rue (2023):

            s(mu) = <grad, m(mu)> + 1/2 <hess, var(mu)>,  (m, var) = (mu1, mu2 - mu1^2),
            grad_mu1 s = E[g] - E[diag H] * m   (Eq 10),   grad_mu2 s = E[diag H] / 2   (Eq 11),

        with grad = E_q[grad loss] and hess = E_q[diag Hessian loss] held constant (Bonnet and
        Price, App D).

        Args:
            mu: expectation parameters.
            grad: E_q[grad loss], shape (P,).
            hess: E_q[diagonal of the Hessian of the loss], shape (P,).

        Returns:
            A scalar tensor.

        Raises:
            ValueError: wrong shapes of ``grad`` or ``hess``.
        """
        for name, value in (("grad", grad), ("hess", hess)):
            if value is None or tuple(value.shape) != (self.dim,):
                got = None if value is None else tuple(value.shape)
                raise ValueError(f"{name} must have shape ({self.dim},), got {got}")
        mean, var = self.mean_cov_from_expectation(mu)
        return inner((grad, hess), (mean, 0.5 * var))

    def _check_natural_values(self, lam: Params, name: str) -> None:
        if not (lam[1] < 0).all():
            raise ValueError(f"{name}[1] (eta2 = -s/2) must be negative: s must be positive")

    def _check_expectation_values(self, mu: Params, name: str) -> None:
        if not (mu[1] - mu[0] ** 2 > 0).all():
            raise ValueError(f"{name}: mu2 - mu1^2 (the variance) must be positive")
