"""Finite mixtures of Gaussians with fixed weights: the BLR for multimodal optimisation (Sec 3.2).

    import torch
    from blrlib.families import GaussianMixture
    q = GaussianMixture(torch.tensor([0.5, 0.5]), 2, dtype=torch.float64)
    lam = q.natural_from_moments(torch.tensor([[-2.0, 0], [2, 0]]), torch.eye(2).repeat(2, 1, 1))
    theta = q.rsample(lam, 100)  # (100, 2)

q(theta) = sum_k pi_k N(theta | m_k, S_k^-1) is not an exponential family, but the joint
q(theta, z = k) = pi_k N(theta | m_k, S_k^-1) is (minimal-conditional, Lin et al. 2019). With
fixed pi (Eq 27 of Khan & Rue, 2023): lam_k = (S_k m_k, -S_k/2) and
mu_k = (pi_k m_k, pi_k (S_k^-1 + m_k m_k^T)), which is the gradient of
A(lam) = sum_k pi_k A_k(lam_k). The entropy of the mixture has no closed form, so the BLR (Eq 28)
puts log q(theta) inside the expectation instead of using a closed-form entropy gradient.

Derived in :ref:`gnr-mixture`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from blrlib.families import _gaussian_math as gm
from blrlib.families._base import ExponentialFamily, Order, Params


class GaussianMixture(ExponentialFamily):
    """Mixture of K full Gaussians with fixed weights pi (Sec 3.2, Eq 27-30, App E).

    Args:
        weights: the fixed mixture weights pi, shape (K,), positive and summing to one.
        dim: the dimension P of theta.
        dtype: floating-point dtype of the weights and of draws.
        device: device of the weights and of draws.

    Raises:
        ValueError: ``weights`` is not a finite positive vector summing to one.
    """

    order = Order.FULL
    closed_form_entropy_gradient = False

    def __init__(
        self,
        weights: Tensor | Sequence[float],
        dim: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(dim, dtype=dtype, device=device)
        weights = torch.as_tensor(weights, dtype=self.dtype, device=self.device).detach()
        if weights.dim() != 1 or weights.numel() < 1:
            raise ValueError(f"weights must have shape (K,), got {tuple(weights.shape)}")
        if not torch.isfinite(weights).all() or not (weights > 0).all():
            raise ValueError(f"weights must be finite and positive, got {weights.tolist()}")
        tol = max(1e-6, 100 * torch.finfo(self.dtype).eps)
        if abs(weights.sum().item() - 1.0) > tol:
            raise ValueError(f"weights must sum to 1, got sum {weights.sum().item()}")
        self.weights = weights
        self.n_components = int(weights.numel())

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.n_components}, dim={self.dim}, dtype={self.dtype})"

    def natural_shapes(self) -> tuple[tuple[int, ...], ...]:
        """((K, P), (K, P, P))."""
        k, p = self.n_components, self.dim
        return ((k, p), (k, p, p))

    def log_partition(self, lam: Params) -> Tensor:
        """A(lam) = sum_k pi_k A_k(lam_k), whose gradient is mu of Eq 27 (a scalar)."""
        return (self.weights * gm.log_partition(lam[0], lam[1])).sum()

    def to_expectation(self, lam: Params) -> Params:
        """mu_k = (pi_k m_k, pi_k (S_k^-1 + m_k m_k^T)) (Eq 27)."""
        first, second = gm.expectation(lam[0], lam[1])
        return self.weights[:, None] * first, self.weights[:, None, None] * second

    def to_natural(self, mu: Params) -> Params:
        """lam_k = (S_k m_k, -S_k/2) with m_k = mu1_k / pi_k (inverse of Eq 27)."""
        return gm.natural_from_mean_cov(*self.mean_cov_from_expectation(mu))

    def sufficient_statistics(self, theta: Tensor) -> Params:
        """The component statistics T_k(theta) = (theta, theta theta^T), repeated over k.

        The joint statistics are 1[z = k] T_k(theta), so that
        log q(theta, z = k) = log pi_k + log h(theta) + <lam_k, T_k(theta)> - A_k(lam_k).
        Shapes (..., K, P) and (..., K, P, P).
        """
        shape = (*theta.shape[:-1], self.n_components, self.dim)
        first = theta.unsqueeze(-2).expand(shape)
        return first, first.unsqueeze(-1) * first.unsqueeze(-2)

    def log_base_measure(self, theta: Tensor) -> Tensor:
        """log h(theta) = -P/2 log(2 pi) of each component; shape (...)."""
        return theta.new_full(theta.shape[:-1], -0.5 * self.dim * gm.LOG_2PI)

    def joint_log_prob(self, lam: Params, theta: Tensor) -> Tensor:
        """log q(theta, z = k) = log pi_k + log N(theta | m_k, S_k^-1); (..., P) -> (..., K)."""
        self._check_theta(theta)
        mean, _, chol = gm.moments(lam[0], lam[1])
        return self.weights.log() + gm.log_density(theta.unsqueeze(-2), mean, chol)

    def log_prob(self, lam: Params, theta: Tensor) -> Tensor:
        """log q(theta) = logsumexp_k log q(theta, z = k); theta (..., P) -> (...)."""
        return torch.logsumexp(self.joint_log_prob(lam, theta), dim=-1)

    def responsibilities(self, lam: Params, theta: Tensor) -> Tensor:
        """r_k(theta) = q(z = k | theta) (Eq 71); theta (..., P) -> (..., K)."""
        return torch.softmax(self.joint_log_prob(lam, theta), dim=-1)

    def rsample(self, lam: Params, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n draws of shape (n, P): z ~ Categorical(pi), then theta = m_z + L_z^-T eps.

        The component indices are discrete (drawn first, from ``generator``); the Gaussian part
        is reparameterised, so the draws are differentiable with respect to ``lam``.
        """
        self._check_n(n)
        z = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = self._randn(n, generator)
        mean, _, chol = gm.moments(lam[0], lam[1])
        return gm.reparameterise(mean[z], chol[z], eps)

    def entropy(
        self, lam: Params, *, n_samples: int = 4096, generator: torch.Generator | None = None
    ) -> Tensor:
        """Monte Carlo estimate of H(q) = -E_q[log q(theta)] (no closed form for mixtures).

        Returns the plain average -1/n sum_i log q(theta_i) over ``n_samples`` reparameterised
        draws (differentiable in ``lam``); its standard error is std(log q(theta_i)) / sqrt(n).
        """
        theta = self.rsample(lam, n_samples, generator=generator)
        return -self.log_prob(lam, theta).mean()

    def kl(
        self,
        lam_q: Params,
        lam_p: Params,
        *,
        n_samples: int = 4096,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Monte Carlo estimate of KL(q || p) = E_q[log q - log p] between two mixtures.

        Both mixtures share this family's weights; the estimate averages over ``n_samples``
        draws from q (standard error std(log q - log p) / sqrt(n)).
        """
        theta = self.rsample(lam_q, n_samples, generator=generator)
        return (self.log_prob(lam_q, theta) - self.log_prob(lam_p, theta)).mean()

    def neg_entropy_natural_gradient(self, lam: Params) -> Params:
        """Not available in closed form for mixtures.

        Raises:
            NotImplementedError: always; the mixture BLR (Eq 28, 67-68) puts log q(theta) inside
                the expectation, E_q[loss + log q], instead.
        """
        raise NotImplementedError(
            "GaussianMixture has no closed-form natural gradient of its entropy; the mixture "
            "BLR (Khan & Rue 2023, Eq 28 and 67-68) adds log q(theta) to the loss inside the "
            "expectation instead (closed_form_entropy_gradient is False)"
        )

    def mean_cov(self, lam: Params) -> tuple[Tensor, Tensor]:
        """(m, cov) of the components, shapes (K, P) and (K, P, P)."""
        mean, _, chol = gm.moments(lam[0], lam[1])
        return mean, gm.symmetrize(torch.cholesky_inverse(chol))

    def mean_cov_from_expectation(self, mu: Params) -> tuple[Tensor, Tensor]:
        """m_k = mu1_k / pi_k and cov_k = mu2_k / pi_k - m_k m_k^T (inverse of Eq 27)."""
        mean = mu[0] / self.weights[:, None]
        return gm.mean_cov_from_expectation(mean, mu[1] / self.weights[:, None, None])

    def natural_from_moments(self, m: Tensor, precision: Tensor) -> Params:
        """The same as :meth:`natural_from_mean_precision`: the second argument is S_k."""
        return self.natural_from_mean_precision(m, precision)

    def natural_from_mean_precision(self, m: Tensor, precision: Tensor) -> Params:
        """lam_k = (S_k m_k, -S_k/2) from means (K, P) and precisions (K, P, P).

        Raises:
            ValueError: wrong shapes, non-finite values or a precision that is not positive
                definite.
        """
        m = torch.as_tensor(m, dtype=self.dtype, device=self.device)
        precision = torch.as_tensor(precision, dtype=self.dtype, device=self.device)
        return gm.natural_from_checked_moments(m, precision, (self.n_components, self.dim))

    def expected_loss_surrogate(self, mu: Params, grad: Tensor, hess: Tensor | None) -> Tensor:
        """A scalar function of mu whose gradient is the natural gradient of E_q[loss].

        Implements App E of Khan & Rue (2023): grad_{m_k} E_q[f] = pi_k E_{q_k}[grad f] and
        grad_{S_k^-1} E_q[f] = pi_k / 2 E_{q_k}[Hessian f], through

            s(mu) = sum_k pi_k [<grad_k, m_k(mu)> + 1/2 <hess_k, cov_k(mu)>],

        with (m_k, cov_k) from :meth:`mean_cov_from_expectation` and grad_k = E_{q_k}[grad f],
        hess_k = E_{q_k}[Hessian f] held constant. Its gradient is
        grad_mu1_k = grad_k - hess_k m_k and grad_mu2_k = hess_k / 2, so that the BLR gives the
        Newton-like updates of Eq 29-30 (with f = loss + log q, Eq 67-68).

        Args:
            mu: expectation parameters (Eq 27).
            grad: per-component expected gradients, shape (K, P).
            hess: per-component expected Hessians, shape (K, P, P).

        Returns:
            A scalar tensor.

        Raises:
            ValueError: wrong shapes of ``grad`` or ``hess``.
        """
        k, p = self.n_components, self.dim
        if tuple(grad.shape) != (k, p):
            raise ValueError(f"grad must have shape ({k}, {p}), got {tuple(grad.shape)}")
        if hess is None or tuple(hess.shape) != (k, p, p):
            got = None if hess is None else tuple(hess.shape)
            raise ValueError(f"hess must have shape ({k}, {p}, {p}), got {got}")
        mean, cov = self.mean_cov_from_expectation(mu)
        per_component = (grad * mean).sum(-1) + 0.5 * (hess * cov).sum((-2, -1))
        return (self.weights * per_component).sum()

    def _check_natural_values(self, lam: Params, name: str) -> None:
        gm.check_symmetric(lam[1], f"{name}[1] (eta2_k = -S_k/2)")
        gm.check_precision(gm.precision(lam[1]), f"{name}[1] (eta2_k = -S_k/2)")

    def _check_expectation_values(self, mu: Params, name: str) -> None:
        gm.check_symmetric(mu[1], f"{name}[1]")
        _, cov = self.mean_cov_from_expectation(mu)
        _, info = torch.linalg.cholesky_ex(cov)
        if (info != 0).any():
            raise ValueError(f"{name}: mu2_k / pi_k - m_k m_k^T must be positive definite")
