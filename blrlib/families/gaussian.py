"""The full-covariance Gaussian family N(m, S^-1): the BLR gives an online Newton method.

    import torch
    from blrlib.families import Gaussian
    q = Gaussian(3, dtype=torch.float64)
    lam = q.natural_from_mean_precision(torch.zeros(3), 2.0 * torch.eye(3))  # (S m, -S/2)
    m, cov = q.mean_cov(lam)

Natural and expectation parameters (Eq 9 of Khan & Rue, 2023):
lam = (S m, -S/2), mu = (m, S^-1 + m m^T), T(theta) = (theta, theta theta^T),
h(theta) = (2 pi)^(-P/2) and A(lam) = 1/2 m^T S m - 1/2 log|S|. The base measure is constant,
so the natural gradient of -H(q) is lam itself (App B). With the Bonnet/Price estimates of
E_q[grad] and E_q[Hessian] the BLR becomes the online Newton update of Eq 12.

Derived in :doc:`/book/blr` and :ref:`gnr-newton`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from blrlib.families import _gaussian_math as gm
from blrlib.families._base import ExponentialFamily, Order, Params, inner


class Gaussian(ExponentialFamily):
    """Multivariate Gaussian with free mean and full precision (Sec 1.3.2, Eq 9-12).

    Args:
        dim: the dimension P of theta.
        dtype: floating-point dtype of draws and converted inputs.
        device: device of draws and converted inputs.
    """

    order = Order.FULL

    def natural_shapes(self) -> tuple[tuple[int, ...], ...]:
        """((P,), (P, P))."""
        return ((self.dim,), (self.dim, self.dim))

    def log_partition(self, lam: Params) -> Tensor:
        """A(lam) = 1/2 m^T S m - 1/2 log|S| with S = -2 eta2, m = S^-1 eta1 (Eq 9).

        The (2 pi)^(-P/2) constant is part of h(theta). eta2 enters only through its symmetric
        part, so the gradient with respect to eta2 is the symmetric matrix S^-1 + m m^T.
        """
        return gm.log_partition(lam[0], lam[1])

    def to_expectation(self, lam: Params) -> Params:
        """mu = (m, S^-1 + m m^T) (Eq 9)."""
        return gm.expectation(lam[0], lam[1])

    def to_natural(self, mu: Params) -> Params:
        """lam = (S m, -S/2) with S^-1 = sym(mu2) - mu1 mu1^T (inverse of Eq 9)."""
        return gm.natural_from_mean_cov(*gm.mean_cov_from_expectation(mu[0], mu[1]))

    def sufficient_statistics(self, theta: Tensor) -> Params:
        """T(theta) = (theta, theta theta^T), shapes (..., P) and (..., P, P)."""
        return theta, theta.unsqueeze(-1) * theta.unsqueeze(-2)

    def log_base_measure(self, theta: Tensor) -> Tensor:
        """log h(theta) = -P/2 log(2 pi), broadcast to shape (...)."""
        return theta.new_full(theta.shape[:-1], -0.5 * self.dim * gm.LOG_2PI)

    def _expected_log_base_measure(self, lam: Params) -> Tensor:
        return lam[0].new_tensor(-0.5 * self.dim * gm.LOG_2PI)

    def log_prob(self, lam: Params, theta: Tensor) -> Tensor:
        """log N(theta | m, S^-1) through a Cholesky factor of S; theta (..., P) -> (...)."""
        self._check_theta(theta)
        mean, _, chol = gm.moments(lam[0], lam[1])
        return gm.log_density(theta, mean, chol)

    def entropy(self, lam: Params) -> Tensor:
        """H(q) = 1/2 log|2 pi e S^-1| (Sec 3.1)."""
        return gm.entropy(torch.linalg.cholesky(gm.precision(lam[1])))

    def rsample(self, lam: Params, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """theta = m + L^-T eps with S = L L^T and eps ~ N(0, I); shape (n, P)."""
        eps = self._randn(n, generator)
        mean, _, chol = gm.moments(lam[0], lam[1])
        return gm.reparameterise(mean, chol, eps)

    def neg_entropy_natural_gradient(self, lam: Params) -> Params:
        """grad_mu E_q[log q] = lam, since h is constant (App B, Eq 64)."""
        return tuple(lam)

    def mean_cov(self, lam: Params) -> tuple[Tensor, Tensor]:
        """(m, S^-1), shapes (P,) and (P, P)."""
        mean, _, chol = gm.moments(lam[0], lam[1])
        return mean, gm.symmetrize(torch.cholesky_inverse(chol))

    def mean_cov_from_expectation(self, mu: Params) -> tuple[Tensor, Tensor]:
        """(m, cov) = (mu1, mu2 - mu1 mu1^T), differentiable in mu (inverse of Eq 9)."""
        return gm.mean_cov_from_expectation(mu[0], mu[1])

    def natural_from_mean_precision(self, m: Tensor, precision: Tensor) -> Params:
        """lam = (S m, -S/2) from a mean (P,) and a positive-definite precision S (P, P).

        The second argument is the precision (inverse covariance), the natural scale of Eq 9.
        With P = 1, Python numbers are accepted.

        Raises:
            ValueError: wrong shapes, non-finite values or S not positive definite.
        """
        m = self._as_param(m, (self.dim,))
        precision = self._as_param(precision, (self.dim, self.dim))
        return gm.natural_from_checked_moments(m, precision, (self.dim,))

    def natural_from_moments(self, m: Tensor, precision: Tensor) -> Params:
        """The same as :meth:`natural_from_mean_precision`: the second argument is S, not S^-1."""
        return self.natural_from_mean_precision(m, precision)

    def expected_loss_surrogate(self, mu: Params, grad: Tensor, hess: Tensor | None) -> Tensor:
        """A scalar function of mu whose gradient is the natural gradient of E_q[loss].

        Implements Eq 10-11 of Khan & Rue (2023) through the first-order expansion of E_q[loss]
        in (m, cov) = (mu1, mu2 - mu1 mu1^T), with grad = E_q[grad loss] (Bonnet: dE/dm) and
        hess = E_q[Hessian loss] (Price: dE/dcov = hess / 2) held constant:

            s(mu) = <grad, m(mu)> + 1/2 <hess, cov(mu)>,
            grad_mu1 s = E[g] - E[H] m   (Eq 10),    grad_mu2 s = E[H] / 2   (Eq 11).

        Args:
            mu: expectation parameters (requires grad for the result to be useful).
            grad: E_q[grad loss], shape (P,).
            hess: E_q[Hessian loss], shape (P, P) (only its symmetric part matters).

        Returns:
            A scalar tensor.

        Raises:
            ValueError: wrong shapes of ``grad`` or ``hess``.
        """
        if tuple(grad.shape) != (self.dim,):
            raise ValueError(f"grad must have shape ({self.dim},), got {tuple(grad.shape)}")
        if hess is None or tuple(hess.shape) != (self.dim, self.dim):
            got = None if hess is None else tuple(hess.shape)
            raise ValueError(f"hess must have shape ({self.dim}, {self.dim}), got {got}")
        mean, cov = self.mean_cov_from_expectation(mu)
        return inner((grad, hess), (mean, 0.5 * cov))

    def _check_natural_values(self, lam: Params, name: str) -> None:
        gm.check_symmetric(lam[1], f"{name}[1] (eta2 = -S/2)")
        gm.check_precision(gm.precision(lam[1]), f"{name}[1] (eta2 = -S/2)")

    def _check_expectation_values(self, mu: Params, name: str) -> None:
        gm.check_symmetric(mu[1], f"{name}[1]")
        _, cov = self.mean_cov_from_expectation(mu)
        _, info = torch.linalg.cholesky_ex(cov)
        if info != 0:
            raise ValueError(f"{name}: mu2 - mu1 mu1^T must be positive definite")
