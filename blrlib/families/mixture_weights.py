"""A mixture of Gaussians whose weights the BLR learns too (Lin et al. 2019, Table 1 "(New)").

    import torch
    from blrlib.families import LearnedGaussianMixture
    q = LearnedGaussianMixture(2, 1, dtype=torch.float64)
    lam = q.natural_from_mean_precision(
        torch.tensor([[-1.0], [1.0]]), torch.ones(2, 1, 1), [0.3, 0.7]
    )
    q.weights_of(lam)  # tensor([0.3, 0.7])

The joint q(theta, z = k) = pi_k N(theta | m_k, S_k^-1) is an exponential family with statistics
(1[z = k] theta, 1[z = k] theta theta^T, 1[z = c] for c < K) (Lin et al. 2019, the minimal
conditional form). Its natural parameters are lam_k = (S_k m_k, -S_k/2) as in Eq 27 and
eta_c = log(pi_c / pi_K) - A_k(lam_c) + A_k(lam_K); its expectation parameters are those of
Eq 27 plus mu_c = pi_c, and A(lam) = log sum_k exp(eta_k + A_k(lam_k)) with eta_K = 0.
The BLR (Eq 28) is then the same as with fixed weights, plus a step on eta whose natural gradient
is delta_c - delta_K, delta_k the derivative of pi_k E_{q_k}[loss + log q] along pi_k at fixed mu_k.

Derived in :ref:`vi-mixture`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from blrlib.families import _gaussian_math as gm
from blrlib.families._base import ExponentialFamily, Order, Params
from blrlib.families.mixture import GaussianMixture


class LearnedGaussianMixture(GaussianMixture):
    """Mixture of K full Gaussians with learned weights (Eq 27-28 with the weights of Lin 2019).

    ``lam`` is (eta1 (K, P), eta2 (K, P, P), eta_z (K - 1,)); the weights are a function of
    ``lam`` (:meth:`weights_of`), not a constant of the family, so there is no ``weights``
    attribute. Everything else (log q, responsibilities, Monte Carlo entropy and KL, the
    per-component Newton-like steps of App E) is that of :class:`GaussianMixture`.

    Args:
        n_components: K, at least 1.
        dim: the dimension P of theta.
        dtype, device: of draws and parameters.

    Raises:
        ValueError: ``n_components`` is not a positive int.
    """

    order = Order.FULL
    closed_form_entropy_gradient = False
    surrogate_needs_values = True  # the weights' gradient needs E_{q_k}[loss], not only its slopes

    def __init__(
        self,
        n_components: int,
        dim: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
            raise ValueError(f"n_components must be a positive int, got {n_components!r}")
        ExponentialFamily.__init__(self, dim, dtype=dtype, device=device)
        self.n_components = n_components

    def __repr__(self) -> str:
        return f"LearnedGaussianMixture(K={self.n_components}, dim={self.dim}, dtype={self.dtype})"

    def natural_shapes(self) -> tuple[tuple[int, ...], ...]:
        """((K, P), (K, P, P), (K - 1,))."""
        k, p = self.n_components, self.dim
        return ((k, p), (k, p, p), (k - 1,))

    def _logits(self, lam: Params) -> Tensor:
        """eta_k + A_k(lam_k), k = 1..K (eta_K = 0): log pi_k up to a constant."""
        eta = torch.cat((lam[2], lam[2].new_zeros(1)))
        return eta + gm.log_partition(lam[0], lam[1])

    def weights_of(self, lam: Params) -> Tensor:
        """pi = softmax(eta_k + A_k(lam_k)), shape (K,)."""
        return torch.softmax(self._logits(lam), dim=-1)

    def log_partition(self, lam: Params) -> Tensor:
        """A(lam) = log sum_k exp(eta_k + A_k(lam_k)), whose gradient is mu (a scalar)."""
        return torch.logsumexp(self._logits(lam), dim=-1)

    def to_expectation(self, lam: Params) -> Params:
        """mu = (pi_k m_k, pi_k (S_k^-1 + m_k m_k^T), pi_{1..K-1}) (Eq 27 and the weights)."""
        pi = self.weights_of(lam)
        first, second = gm.expectation(lam[0], lam[1])
        return pi[:, None] * first, pi[:, None, None] * second, pi[:-1]

    def _weights_from_expectation(self, mu: Params) -> Tensor:
        return torch.cat((mu[2], 1.0 - mu[2].sum(0, keepdim=True)))

    def to_natural(self, mu: Params) -> Params:
        """The inverse of :meth:`to_expectation`."""
        mean, cov = self.mean_cov_from_expectation(mu)
        eta1, eta2 = gm.natural_from_mean_cov(mean, cov)
        log_pi = self._weights_from_expectation(mu).log()
        a = gm.log_partition(eta1, eta2)
        return eta1, eta2, (log_pi[:-1] - log_pi[-1]) - (a[:-1] - a[-1])

    def joint_log_prob(self, lam: Params, theta: Tensor) -> Tensor:
        """log q(theta, z = k) = log pi_k + log N(theta | m_k, S_k^-1); (..., P) -> (..., K)."""
        self._check_theta(theta)
        mean, _, chol = gm.moments(lam[0], lam[1])
        return self.weights_of(lam).log() + gm.log_density(theta.unsqueeze(-2), mean, chol)

    def rsample(self, lam: Params, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n draws (n, P): z ~ Categorical(pi(lam)), then theta = m_z + L_z^-T eps."""
        self._check_n(n)
        z = torch.multinomial(
            self.weights_of(lam).detach(), n, replacement=True, generator=generator
        )
        eps = self._randn(n, generator)
        mean, _, chol = gm.moments(lam[0], lam[1])
        return gm.reparameterise(mean[z], chol[z], eps)

    def mean_cov_from_expectation(self, mu: Params) -> tuple[Tensor, Tensor]:
        """m_k = mu1_k / pi_k and cov_k = mu2_k / pi_k - m_k m_k^T, with pi_k from mu."""
        pi = self._weights_from_expectation(mu)
        mean = mu[0] / pi[:, None]
        return gm.mean_cov_from_expectation(mean, mu[1] / pi[:, None, None])

    def natural_from_moments(  # type: ignore[override]
        self, m: Tensor, precision: Tensor, weights: Tensor | list[float]
    ) -> Params:
        """The same as :meth:`natural_from_mean_precision`: the second argument is S_k."""
        return self.natural_from_mean_precision(m, precision, weights)

    def natural_from_mean_precision(  # type: ignore[override]
        self, m: Tensor, precision: Tensor, weights: Tensor | list[float]
    ) -> Params:
        """lam from means (K, P), precisions (K, P, P) and weights (K,), positive, sum one.

        Raises:
            ValueError: wrong shapes, non-finite values, a precision that is not positive
                definite, or weights off the simplex.
        """
        m = torch.as_tensor(m, dtype=self.dtype, device=self.device)
        precision = torch.as_tensor(precision, dtype=self.dtype, device=self.device)
        eta1, eta2 = gm.natural_from_checked_moments(m, precision, (self.n_components, self.dim))
        w = torch.as_tensor(weights, dtype=self.dtype, device=self.device)
        if tuple(w.shape) != (self.n_components,) or not bool((w > 0).all()):
            raise ValueError(f"weights must be {self.n_components} positive numbers, got {w}")
        if abs(float(w.sum()) - 1.0) > 1e-6:
            raise ValueError(f"weights must sum to 1, got sum {float(w.sum())}")
        a = gm.log_partition(eta1, eta2)
        return eta1, eta2, (w[:-1].log() - w[-1].log()) - (a[:-1] - a[-1])

    def expected_loss_surrogate(
        self, mu: Params, grad: Tensor, hess: Tensor | None, values: Tensor | None = None
    ) -> Tensor:
        """A scalar function of mu whose gradient is the natural gradient of E_q[f].

        With E_q[f] = sum_k pi_k g_k(m_k, cov_k), g_k(m, cov) = E_N(m, cov)[f], its first-order
        expansion at the current (m_k, cov_k),

            s(mu) = sum_k pi_k(mu) [v_k + <grad_k, m_k(mu) - m_k>
                                   + 1/2 <hess_k, cov_k(mu) - cov_k>],

        has the gradient of E_q[f] at mu (Bonnet and Price: grad_m g = E[grad f],
        grad_cov g = E[Hessian f] / 2). For mu_k it is App E's (Eq 29-30, as with fixed
        weights); for mu_c = pi_c it is delta_c - delta_K, with
        delta_k = v_k - <grad_k, m_k> + 1/2 <hess_k, m_k m_k^T - cov_k>.

        Args:
            mu: expectation parameters.
            grad, hess: per-component E_{q_k}[grad f] (K, P) and E_{q_k}[Hessian f] (K, P, P).
            values: per-component E_{q_k}[f] (K,).

        Raises:
            ValueError: wrong shapes, or ``values`` missing.
        """
        k, p = self.n_components, self.dim
        if tuple(grad.shape) != (k, p):
            raise ValueError(f"grad must have shape ({k}, {p}), got {tuple(grad.shape)}")
        if hess is None or tuple(hess.shape) != (k, p, p):
            got = None if hess is None else tuple(hess.shape)
            raise ValueError(f"hess must have shape ({k}, {p}, {p}), got {got}")
        if values is None or tuple(values.shape) != (k,):
            got = None if values is None else tuple(values.shape)
            raise ValueError(f"values must have shape ({k},) (E_q_k[loss]), got {got}")
        mean, cov = self.mean_cov_from_expectation(mu)
        m0, c0 = mean.detach(), cov.detach()
        per = values + (grad * (mean - m0)).sum(-1) + 0.5 * (hess * (cov - c0)).sum((-2, -1))
        return (self._weights_from_expectation(mu) * per).sum()

    def _check_expectation_values(self, mu: Params, name: str) -> None:
        pi = self._weights_from_expectation(mu)
        if not bool((pi > 0).all()):
            raise ValueError(f"{name}[2]: the weights (mu[2], 1 - sum mu[2]) must be positive")
        super()._check_expectation_values(mu, name)
