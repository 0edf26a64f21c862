"""The diagonal Gaussian family N(m, diag(s)^-1): the BLR gives RMSprop/Adam-like updates.

    import torch
    from blrlib.families import DiagGaussian
    q = DiagGaussian(3, dtype=torch.float64)
    lam = q.natural_from_mean_precision(torch.zeros(3), torch.ones(3))  # (s m, -s/2)
    m, var = q.mean_cov(lam)                                      # var = 1 / s, shape (3,)

The mean-field version of Eq 9 of Khan & Rue (2023), elementwise: lam = (s m, -s/2),
mu = (m, 1/s + m^2), T(theta) = (theta, theta^2), h(theta) = (2 pi)^(-P/2) and
A(lam) = sum(1/2 s m^2 - 1/2 log s). The natural gradient of -H(q) is lam (App B); with the
expected gradient and Hessian diagonal the BLR gives the updates of Sec 4.2 and 4.4.

Derived in :ref:`optim-diag`, :ref:`optim-ogn` and :ref:`optim-von`.
"""

from __future__ import annotations

from enum import Enum

import torch
from torch import Tensor

from blrlib.families._base import ExponentialFamily, Order, Params, inner
from blrlib.families._gaussian_math import LOG_2PI

__all__ = ["DiagGaussian", "Momentum", "blr_update_"]


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
        """The same as :meth:`natural_from_mean_precision`: the second argument is s, not 1/s."""
        return self.natural_from_mean_precision(m, precision)

    def natural_from_mean_precision(self, m: Tensor, precision: Tensor) -> Params:
        """lam = (s m, -s/2) from a mean (P,) and positive precisions s (P,).

        The second argument holds precisions (inverse variances). With P = 1, Python numbers
        are accepted.

        Raises:
            ValueError: wrong shapes, non-finite values or non-positive precisions.
        """
        m = self._as_param(m, (self.dim,))
        precision = self._as_param(precision, (self.dim,))
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


class Momentum(str, Enum):
    """Momentum of :func:`blr_update_`: ``natural`` (App F, Eq 80) or ``ema`` (Eq 77, Adam's)."""

    NATURAL = "natural"
    EMA = "ema"


def blr_update_(
    means: list[Tensor],
    hess: list[Tensor],
    grads: list[Tensor],
    hess_hat: list[Tensor] | None,
    *,
    lr: float,
    beta: float,
    n_data: float,
    prior_prec: float,
    gamma: float = 0.0,
    momentum: Momentum = Momentum.NATURAL,
    buffers: tuple[list[Tensor], ...] = (),
    step: int = 1,
    sqrt: bool = False,
    eps: float = 0.0,
    bias_correction: bool = False,
    positive: bool = False,
    work: list[Tensor] | None = None,
) -> None:
    """One BLR step of the diagonal Gaussian q = N(m, diag(s)^-1), in place, on lists of tensors.

    Implements Eq 37 of Khan & Rue (2023) with separate rates for m and s (Eq 36), for the loss
    bar-ell = N * (batch-mean loss) + delta |theta|^2 / 2 and in per-example units
    (s = N h + delta, so that the step reads like Adam's):

        h <- (1 - beta) h + beta h_hat,      m <- m - lr (g + delta/N m) / (h + delta/N),

    where g and h_hat estimate E_q[grad] and E_q[diag Hessian] of the batch-mean loss.
    With lr = beta = rho this is ``blr.step`` with :class:`DiagGaussian` (tests/optim).
    Options, each a departure the paper names:

    * ``momentum="natural"``, ``gamma``: App F, Eq 80, lam <- lam - rho grad + gamma (lam_t -
      lam_{t-1}); in (m, s) coordinates h gains gamma (h_t - h_{t-1}) and the mean step
      gamma D_{t-1} (m_t - m_{t-1}) / D_{t+1} with D = h + delta/N (a corrected Eq 81).
      ``buffers`` = (h_t - h_{t-1}, D_{t-1} (m_t - m_{t-1})), zero-initialised.
    * ``momentum="ema"``: Eq 77, u <- gamma u + (1 - gamma) g replaces g; ``buffers`` = (u,).
    * ``sqrt``, ``eps``: Eq 38, the scaling sqrt(h) + eps replaces h + delta/N; with
      ``hess_hat=None`` h_hat = (g + delta/N m)^2, so this is RMSprop, or Adam with ``ema``.
    * ``bias_correction``: Adam's division by 1 - gamma^step (and 1 - (1 - beta)^step for h
      under ``sqrt``).
    * ``positive``: adds beta^2 / 2 (h - h_hat)^2 / (h + delta/N), which keeps s positive for
      any h_hat (Lin, Schmidt & Khan 2020); it is not part of Eq 37, so off by default.

    Args:
        means: the means m (the network's weights), updated in place.
        hess: h, the per-example precision without the prior, updated in place.
        grads: g, the estimated gradient of the batch-mean loss.
        hess_hat: the estimated Hessian diagonal of the batch-mean loss, or None (``sqrt``).
        lr, beta: the rates of m and of h (rho for both in Eq 37).
        n_data, prior_prec: N and the prior precision delta.
        gamma, momentum, buffers, step, sqrt, eps, bias_correction, positive: see above.
        work: scratch tensors shaped like ``hess`` (allocated when None); ``work`` and
            ``hess_hat`` are overwritten, so that a step allocates nothing.
    """
    wd = prior_prec / n_data
    work = [torch.empty_like(h) for h in hess] if work is None else work
    if hess_hat is None:  # Eq 38: the squared gradient of bar-ell / N
        torch._foreach_copy_(work, grads)
        torch._foreach_add_(work, means, alpha=wd)
        hess_hat = torch._foreach_mul(work, work)
    natural = momentum is Momentum.NATURAL and gamma != 0
    if natural:
        dh, vel = buffers
        h_old = [h.clone() for h in hess]
        d_old = torch._foreach_add(hess, wd)  # D_t, before the update
    if positive:  # work <- h + delta / N, before the update
        _add_into(work, hess, wd)
    torch._foreach_sub_(hess_hat, hess)  # hess_hat <- h_hat - h
    torch._foreach_add_(hess, hess_hat, alpha=beta)  # h <- h + beta (h_hat - h)
    if positive:  # + beta^2 / 2 (h - h_hat)^2 / (h + delta / N)
        torch._foreach_mul_(hess_hat, hess_hat)
        torch._foreach_div_(hess_hat, work)  # (addcdiv_ would round differently)
        torch._foreach_add_(hess, hess_hat, alpha=0.5 * beta * beta)
    if natural:  # h_{t+1} += gamma (h_t - h_{t-1});  dh <- h_{t+1} - h_t
        torch._foreach_add_(hess, dh, alpha=gamma)
        torch._foreach_copy_(dh, hess)
        torch._foreach_sub_(dh, h_old)
    if sqrt:  # work <- the scaling D_{t+1}
        torch._foreach_copy_(work, hess)
        if bias_correction:
            torch._foreach_div_(work, 1.0 - (1.0 - beta) ** step)
        torch._foreach_sqrt_(work)
        torch._foreach_add_(work, eps)
    else:
        _add_into(work, hess, wd)
    if momentum is Momentum.EMA and gamma != 0:  # u <- gamma u + (1 - gamma) (g + delta/N m)
        (direction,) = buffers
        torch._foreach_lerp_(direction, grads, 1.0 - gamma)
        if wd != 0:
            torch._foreach_add_(direction, means, alpha=(1.0 - gamma) * wd)
        if bias_correction:
            lr = lr / (1.0 - gamma**step)
    else:  # hess_hat is free again: it holds g + delta/N m
        direction = hess_hat
        torch._foreach_copy_(direction, grads)
        torch._foreach_add_(direction, means, alpha=wd)
    if natural:  # m <- m - (lr g - gamma vel) / D_{t+1};  vel <- D_t (m_{t+1} - m_t)
        torch._foreach_mul_(direction, lr)
        torch._foreach_add_(direction, vel, alpha=-gamma)
        torch._foreach_div_(direction, work)
        torch._foreach_sub_(means, direction)
        torch._foreach_mul_(direction, d_old)
        torch._foreach_zero_(vel)
        torch._foreach_sub_(vel, direction)
        return
    torch._foreach_addcdiv_(means, direction, work, value=-lr)


def _add_into(out: list[Tensor], xs: list[Tensor], c: float) -> None:
    """out <- x + c, one pass per tensor (copying, then adding in place, would take two)."""
    for o, x in zip(out, xs, strict=True):
        torch.add(x, c, out=o)
