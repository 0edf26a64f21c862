"""The Normal-Wishart family over (m, Lambda): the conjugate family of a full-covariance Gaussian.

    import torch
    from blrlib.families import NormalWishart
    q = NormalWishart(2, dtype=torch.float64)            # theta = (m (2,), Lambda (2, 2) flat)
    lam = q.natural_from_moments(torch.zeros(2), 1.0, torch.eye(2), 4.0)  # m0, beta, W, nu
    m0, beta, w, nu = q.moments(lam)

p(m, Lambda) = N(m | m0, (beta Lambda)^-1) Wishart(Lambda | W, nu) (Bishop 2006, Eq 10.40).
theta is the flat vector (m, vec Lambda) of length D + D^2, T(theta) = (Lambda m, m^T Lambda m,
Lambda, log|Lambda|), h = 1 and
lam = (beta m0, -beta / 2, -(W^-1 + beta m0 m0^T) / 2, (nu - D) / 2),
A(lam) = nu D / 2 log 2 - nu / 2 log|W^-1| + log Gamma_D(nu / 2) + D / 2 log(2 pi / beta),
mu = (nu W m0, D / beta + nu m0^T W m0, nu W, sum_i psi((nu - i) / 2) + D log 2 + log|W|).
A Gaussian observation y adds (y, -1/2, -y y^T / 2, 1/2) to lam (Eq 54 of Khan & Rue, 2023).
The scalar entries are stored with shape (1,), so that ``inner`` treats every entry alike.

Derived in :ref:`conj-bayes`; used for the mixture components in :ref:`vi-vmp`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from blrlib.families._base import ExponentialFamily, Order, Params
from blrlib.families._special import standard_gamma

_MAX_ITER = 200


def _log_gap(nu: Tensor, d: int) -> Tensor:
    """g(nu) = D log nu - sum_i psi((nu - i) / 2) - D log 2, decreasing and convex in nu."""
    i = torch.arange(d, dtype=nu.dtype, device=nu.device)
    return d * nu.log() - torch.digamma((nu - i) / 2).sum() - d * math.log(2.0)


def _newton(nu: Tensor, gap: Tensor, d: int) -> Tensor:
    i = torch.arange(d, dtype=nu.dtype, device=nu.device)
    slope = d / nu - 0.5 * torch.polygamma(1, (nu - i) / 2).sum()
    return (_log_gap(nu, d) - gap) / slope


def degrees_from_log_gap(gap: Tensor, d: int) -> Tensor:
    """nu > D - 1 with g(nu) = gap, where gap = log|E[Lambda]| - E[log|Lambda|] > 0.

    Safeguarded Newton steps from the large-nu approximation g ~ D (D + 1) / (2 nu), then one
    differentiable step (the implicit-function theorem, as in ``_special``).
    """
    with torch.no_grad():
        s = gap.detach()
        x = (d * (d + 1) / (2 * s)).clamp_min(1e-3)  # x = nu - (D - 1) > 0
        for _ in range(_MAX_ITER):
            delta = _newton(x + d - 1, s, d)
            x = torch.maximum(x - delta, x / 10.0)
            if delta.abs() <= 1e-15 * (x + d - 1):
                break
        nu = x + d - 1
    return nu - _newton(nu, gap, d)


class NormalWishart(ExponentialFamily):
    """N(m | m0, (beta Lambda)^-1) Wishart(Lambda | W, nu) over R^D x SPD(D) (Sec 5.1, 5.3).

    Args:
        d: the dimension D of m; ``dim`` is D + D^2.
        dtype: floating-point dtype of draws.
        device: device of draws.
    """

    order = Order.FIRST

    def __init__(
        self,
        d: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(f"d must be a positive int, got {d!r}")
        super().__init__(d + d * d, dtype=dtype, device=device)
        self.d = d

    def natural_shapes(self) -> tuple[tuple[int, ...], ...]:
        """((D,), (1,), (D, D), (1,))."""
        return ((self.d,), (1,), (self.d, self.d), (1,))

    def _w_inv(self, lam: Params) -> tuple[Tensor, Tensor, Tensor]:
        beta = -2.0 * lam[1][0]
        m0 = lam[0] / beta
        return m0, beta, -2.0 * lam[2] - beta * torch.outer(m0, m0)

    def moments(self, lam: Params) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(m0 (D,), beta (), W (D, D), nu ())."""
        m0, beta, w_inv = self._w_inv(lam)
        return m0, beta, torch.linalg.inv(w_inv), 2.0 * lam[3][0] + self.d

    def natural_from_moments(
        self, m0: Tensor, beta: float | Tensor, w: Tensor, nu: float | Tensor
    ) -> Params:
        """lam from m0 (D,), beta > 0, a positive-definite scale W (D, D) and nu > D - 1.

        Raises:
            ValueError: wrong shapes, non-finite values, beta <= 0, nu <= D - 1 or W not
                positive definite (the message names ``m0, beta, w, nu``).
        """
        kw = {"dtype": self.dtype, "device": self.device}
        beta, nu = (torch.as_tensor(x, **kw) for x in (beta, nu))
        m0, w = self._as_param(m0, (self.d,)), self._as_param(w, (self.d, self.d))
        if tuple(w.shape) != (self.d, self.d):
            raise ValueError(f"w must have shape ({self.d}, {self.d}), got {tuple(w.shape)}")
        w_inv = torch.linalg.inv(w)
        lam = (
            beta * m0,
            (-0.5 * beta).reshape(1),
            -0.5 * (w_inv + beta * torch.outer(m0.reshape(-1), m0.reshape(-1))),
            (0.5 * (nu - self.d)).reshape(1),
        )
        self.check_natural(lam, "m0, beta, w, nu")
        return lam

    def log_partition(self, lam: Params) -> Tensor:
        """A(lam) = nu D/2 log 2 - nu/2 log|W^-1| + log Gamma_D(nu/2) + D/2 log(2 pi / beta)."""
        _, beta, w_inv = self._w_inv(lam)
        nu, d = 2.0 * lam[3][0] + self.d, self.d
        return (
            0.5 * nu * d * math.log(2.0)
            - 0.5 * nu * torch.logdet(w_inv)
            + torch.mvlgamma(0.5 * nu, d)
            + 0.5 * d * (math.log(2 * math.pi) - beta.log())
        )

    def to_expectation(self, lam: Params) -> Params:
        """mu = (E[Lambda m], E[m^T Lambda m], E[Lambda], E[log|Lambda|])."""
        m0, beta, w, nu = self.moments(lam)
        e_lam = nu * w
        i = torch.arange(self.d, dtype=nu.dtype, device=nu.device)
        e_logdet = torch.digamma((nu - i) / 2).sum() + self.d * math.log(2.0) + torch.logdet(w)
        return (
            e_lam @ m0,
            (self.d / beta + m0 @ e_lam @ m0).reshape(1),
            e_lam,
            e_logdet.reshape(1),
        )

    def to_natural(self, mu: Params) -> Params:
        """Invert :meth:`to_expectation`; nu solves a digamma equation by Newton's method."""
        e_lam = mu[2]
        m0 = torch.linalg.solve(e_lam, mu[0])
        beta = self.d / (mu[1][0] - m0 @ mu[0])
        nu = degrees_from_log_gap(torch.logdet(e_lam) - mu[3][0], self.d)
        w_inv = nu * torch.linalg.inv(e_lam)
        return (
            beta * m0,
            (-0.5 * beta).reshape(1),
            -0.5 * (w_inv + beta * torch.outer(m0, m0)),
            (0.5 * (nu - self.d)).reshape(1),
        )

    def split(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """(m (..., D), Lambda (..., D, D)) from flat theta (..., D + D^2)."""
        return theta[..., : self.d], theta[..., self.d :].unflatten(-1, (self.d, self.d))

    def sufficient_statistics(self, theta: Tensor) -> Params:
        """T = (Lambda m, m^T Lambda m, Lambda, log|Lambda|) for theta (..., D + D^2)."""
        m, prec = self.split(theta)
        prec_m = (prec @ m.unsqueeze(-1)).squeeze(-1)
        return prec_m, (m * prec_m).sum(-1, keepdim=True), prec, torch.logdet(prec).unsqueeze(-1)

    def log_base_measure(self, theta: Tensor) -> Tensor:
        """log h = 0; shape (...)."""
        return theta.new_zeros(theta.shape[:-1])

    def rsample(self, lam: Params, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Bartlett: Lambda = L A A^T L^T, A_ii^2 ~ chi2(nu - i), A_ij ~ N(0, 1) (i > j), L L^T = W;
        then m = m0 + (L A)^-T eps / sqrt(beta). Shape (n, D + D^2)."""
        self._check_n(n)
        m0, beta, w, nu = self.moments(lam)
        d, kw = self.d, {"dtype": self.dtype, "device": self.device}
        i = torch.arange(d, **kw)
        chi2 = 2.0 * standard_gamma(((nu - i) / 2).expand(n, d), generator)
        noise = torch.randn(n, d, d, generator=generator, **kw).tril(-1)
        a = noise + torch.diag_embed(chi2.sqrt())
        c = torch.linalg.cholesky(w) @ a  # (n, D, D), lower triangular
        eps = torch.randn(n, d, 1, generator=generator, **kw)
        m = m0 + torch.linalg.solve_triangular(c.mT, eps, upper=True).squeeze(-1) / beta.sqrt()
        return torch.cat((m, (c @ c.mT).flatten(-2)), dim=-1)

    def neg_entropy_natural_gradient(self, lam: Params) -> Params:
        """grad_mu E_q[log q] = lam, since h is constant (App B, Eq 64)."""
        return tuple(lam)

    def _check_natural_values(self, lam: Params, name: str) -> None:
        if not (lam[1] < 0).all():
            raise ValueError(f"{name}: need beta = -2 lam[1] > 0")
        if not (2.0 * lam[3] + self.d > self.d - 1).all():
            raise ValueError(f"{name}: need nu = 2 lam[3] + D > D - 1")
        _, info = torch.linalg.cholesky_ex(self._w_inv(lam)[2])
        if info != 0:
            raise ValueError(f"{name}: W^-1 = -2 lam[2] - beta m0 m0^T must be positive definite")

    def _check_expectation_values(self, mu: Params, name: str) -> None:
        _, info = torch.linalg.cholesky_ex(mu[2])
        if info != 0 or not (mu[3] < torch.logdet(mu[2])).all():
            raise ValueError(f"{name}: need E[Lambda] positive definite, E log|L| < log|E L|")
        if not mu[1][0] > mu[0] @ torch.linalg.solve(mu[2], mu[0]):
            raise ValueError(f"{name}: need E[m^T L m] > E[L m]^T E[L]^-1 E[L m]")
