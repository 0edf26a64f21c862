"""The Gaussian family with a fixed precision N(m, S^-1): the BLR gives (preconditioned) SGD.

    import torch
    from blrlib.families import FixedCovGaussian
    q = FixedCovGaussian(torch.ones(3, dtype=torch.float64))  # S = I: gradient descent (Eq 7)
    lam = q.natural_from_moments(torch.zeros(3))               # (S m,)
    m, cov = q.mean_cov(lam)                                   # cov = S^-1, shape (3, 3)

Sec 1.3.1 and Eq 35 of Khan & Rue (2023): lam = S m, mu = m, T(theta) = theta,
log h(theta) = 1/2 log|S / (2 pi)| - 1/2 theta^T S theta and A(lam) = 1/2 m^T S m.
The entropy does not depend on m, so the natural gradient of -H(q) is
lam + grad_mu E_q[log h] = S m - S m = 0 and the BLR with rho_t is m <- m - rho_t S^-1 E[grad].

Derived in :ref:`gnr-gd`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from blrlib.families import _gaussian_math as gm
from blrlib.families._base import ExponentialFamily, Order, Params


class FixedCovGaussian(ExponentialFamily):
    """Gaussian with free mean and a fixed precision S (Eq 7 and 35).

    Args:
        precision: the fixed precision S, a positive vector (P,) (diagonal S) or a symmetric
            positive-definite matrix (P, P).
        dtype: dtype of the family; defaults to the dtype of ``precision`` when it is floating.
        device: device of the family; defaults to the device of ``precision``.

    Raises:
        TypeError: ``precision`` is not a tensor.
        ValueError: ``precision`` has the wrong shape, is not finite, or is not positive
            (definite) or symmetric.
    """

    order = Order.FIRST

    def __init__(
        self,
        precision: Tensor,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(precision, Tensor):
            raise TypeError(f"precision must be a torch.Tensor, got {type(precision).__name__}")
        if dtype is None:
            floating = precision.dtype.is_floating_point
            dtype = precision.dtype if floating else torch.get_default_dtype()
        device = precision.device if device is None else device
        if (
            precision.dim() not in (1, 2)
            or (precision.dim() == 2 and precision.shape[0] != precision.shape[1])
            or precision.shape[0] < 1
        ):
            raise ValueError(
                f"precision must have shape (P,) or (P, P), got {tuple(precision.shape)}"
            )
        super().__init__(int(precision.shape[0]), dtype=dtype, device=device)
        precision = precision.detach().to(dtype=self.dtype, device=self.device)
        if not torch.isfinite(precision).all():
            raise ValueError("precision contains non-finite values (NaN or inf)")
        self.diagonal = precision.dim() == 1
        if self.diagonal:
            if not (precision > 0).all():
                raise ValueError("precision (diagonal) must be positive")
            self._log_det = precision.log().sum()  # no dense factor: P can be millions
        else:
            gm.check_symmetric(precision, "precision")
            gm.check_precision(precision, "precision")
            self._chol = torch.linalg.cholesky(gm.symmetrize(precision))
            self._log_det = gm.log_det_from_cholesky(self._chol)
        self.precision = precision

    def __repr__(self) -> str:
        kind = "diagonal" if self.diagonal else "full"
        return f"FixedCovGaussian(dim={self.dim}, precision={kind}, dtype={self.dtype})"

    def natural_shapes(self) -> tuple[tuple[int, ...], ...]:
        """((P,),)."""
        return ((self.dim,),)

    def _prec_times(self, x: Tensor) -> Tensor:
        """S x for x of shape (..., P)."""
        if self.diagonal:
            return self.precision * x
        return (self.precision @ x.unsqueeze(-1)).squeeze(-1)

    def _mean(self, lam: Params) -> Tensor:
        """m = S^-1 lam."""
        if self.diagonal:
            return lam[0] / self.precision
        return torch.cholesky_solve(lam[0].unsqueeze(-1), self._chol).squeeze(-1)

    def log_partition(self, lam: Params) -> Tensor:
        """A(lam) = 1/2 m^T S m = 1/2 lam^T S^-1 lam."""
        return 0.5 * (lam[0] * self._mean(lam)).sum()

    def to_expectation(self, lam: Params) -> Params:
        """mu = (m,) = (S^-1 lam,)."""
        return (self._mean(lam),)

    def to_natural(self, mu: Params) -> Params:
        """lam = (S m,)."""
        return (self._prec_times(mu[0]),)

    def sufficient_statistics(self, theta: Tensor) -> Params:
        """T(theta) = (theta,), shape (..., P)."""
        return (theta,)

    def log_base_measure(self, theta: Tensor) -> Tensor:
        """log h(theta) = 1/2 log|S / (2 pi)| - 1/2 theta^T S theta (Eq 35); shape (...)."""
        quad = (theta * self._prec_times(theta)).sum(-1)
        return 0.5 * (self._log_det - self.dim * gm.LOG_2PI) - 0.5 * quad

    def _expected_log_base_measure(self, lam: Params) -> Tensor:
        # E_q[theta^T S theta] = tr(S S^-1) + m^T S m = P + m^T S m.
        mean = self._mean(lam)
        quad = self.dim + (mean * lam[0]).sum()
        return 0.5 * (self._log_det - self.dim * gm.LOG_2PI) - 0.5 * quad

    def log_prob(self, lam: Params, theta: Tensor) -> Tensor:
        """log N(theta | m, S^-1); theta (..., P) -> (...)."""
        self._check_theta(theta)
        diff = theta - self._mean(lam)
        quad = (diff * self._prec_times(diff)).sum(-1)
        return 0.5 * (self._log_det - self.dim * gm.LOG_2PI) - 0.5 * quad

    def entropy(self, lam: Params) -> Tensor:
        """H(q) = 1/2 log|2 pi e S^-1|, a constant.

        ``0 * lam`` is added so that the result stays attached to the autograd graph of ``lam``
        (its gradient is exactly zero), like the entropies of the other families.
        """
        const = 0.5 * self.dim * (1.0 + gm.LOG_2PI) - 0.5 * self._log_det
        return const + 0.0 * lam[0].sum()

    def rsample(self, lam: Params, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """theta = m + L^-T eps with S = L L^T and eps ~ N(0, I); shape (n, P)."""
        eps = self._randn(n, generator)
        mean = self._mean(lam)
        if self.diagonal:
            return mean + eps * self.precision.rsqrt()
        return gm.reparameterise(mean, self._chol, eps)

    def neg_entropy_natural_gradient(self, lam: Params) -> Params:
        """grad_mu E_q[log q] = lam + grad_mu E_q[log h] = S m - S m = 0 (App B, Eq 64)."""
        return (torch.zeros_like(lam[0]),)

    def mean_cov(self, lam: Params) -> tuple[Tensor, Tensor]:
        """(m, S^-1): shapes (P,) and, in the layout of the precision, (P,) or (P, P)."""
        return self._mean(lam), self.covariance()

    def covariance(self) -> Tensor:
        """The fixed covariance S^-1: a vector (P,) for a diagonal S (never a dense P x P
        matrix, so that a diagonal family scales to many parameters), else a (P, P) matrix."""
        if self.diagonal:
            return self.precision.reciprocal()
        return gm.symmetrize(torch.cholesky_inverse(self._chol))

    def mean_cov_from_expectation(self, mu: Params) -> tuple[Tensor, Tensor]:
        """(m, S^-1) = (mu1, S^-1)."""
        return mu[0], self.covariance()

    def natural_from_moments(self, m: Tensor, precision: Tensor | None = None) -> Params:
        """lam = (S m,) from a mean (P,).

        Args:
            m: the mean, shape (P,).
            precision: optional; if given it must equal the fixed precision (same layout).

        Raises:
            ValueError: wrong shape or non-finite ``m``, or a ``precision`` that differs from the
                family's.
        """
        m = torch.as_tensor(m, dtype=self.dtype, device=self.device)
        if tuple(m.shape) != (self.dim,):
            raise ValueError(f"m must have shape ({self.dim},), got {tuple(m.shape)}")
        if not torch.isfinite(m).all():
            raise ValueError("m must be finite")
        if precision is not None:
            precision = torch.as_tensor(precision, dtype=self.dtype, device=self.device)
            if precision.shape != self.precision.shape or not torch.allclose(
                precision, self.precision
            ):
                raise ValueError("precision must equal the family's fixed precision (or be None)")
        return (self._prec_times(m),)

    def expected_loss_surrogate(
        self, mu: Params, grad: Tensor, hess: Tensor | None = None
    ) -> Tensor:
        """A scalar function of mu whose gradient is the natural gradient of E_q[loss].

        Implements Eq 7 (and 35) of Khan & Rue (2023): s(mu) = <grad, m(mu)> with m = mu1 and
        grad = E_q[grad loss] (Bonnet's theorem), so grad_mu s = E_q[grad loss].

        Args:
            mu: expectation parameters.
            grad: E_q[grad loss], shape (P,).
            hess: ignored (the covariance is fixed).

        Returns:
            A scalar tensor.

        Raises:
            ValueError: wrong shape of ``grad``.
        """
        if tuple(grad.shape) != (self.dim,):
            raise ValueError(f"grad must have shape ({self.dim},), got {tuple(grad.shape)}")
        return (grad * mu[0]).sum()
