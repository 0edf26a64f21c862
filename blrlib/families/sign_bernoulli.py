"""Independent Bernoulli variables on {-1, +1}^P and their Concrete relaxation (Sec 4.5).

    import torch
    from blrlib.families import SignBernoulli
    q = SignBernoulli(4, tau=0.1, dtype=torch.float64)
    lam = (torch.zeros(4, dtype=torch.float64),)   # p(theta_j = +1) = sigmoid(2 lam_j) = 1/2
    theta = q.relaxed_sample(lam, 10)              # (10, 4) in (-1, 1), differentiable (Eq 50)

The paper's parametrisation of the binary weights of BayesBiNN (Khan & Rue 2023, Sec 4.5, after
Eq 48): p = q(theta = +1), lam = 1/2 log(p / (1 - p)), mu = E_q[theta] = 2p - 1 = tanh(lam),
T(theta) = theta, h(theta) = 1 and A(lam) = sum log(2 cosh lam). It is its own family, not an
option of :class:`~blrlib.families.Bernoulli`, whose support is {0, 1} and whose lam is logit p.

Draws are discrete; the Concrete relaxation of Eq 50 (Maddison et al. 2016) gives continuous,
reparameterised ones, theta_hat = tanh((lam + delta) / tau) with delta = 1/2 log(u / (1 - u)),
u ~ U(0, 1), whose tau -> 0 limit sign(lam + delta) is an exact draw of q. The temperature tau is
a structural constant of the family object: it only matters to the relaxed (Monte Carlo)
natural-gradient estimator of Eq 51, never to q itself.

Derived in :ref:`binary-bayesbinn` and :ref:`binary-ste`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import vmap

from blrlib._checks import positive_float
from blrlib.families._base import ExponentialFamily, Order, Params

__all__ = [
    "SignBernoulli",
    "bayesbinn_update_",
    "concrete",
    "log_sech2",
    "logistic_noise",
    "relaxed_scale",
]

LOG2 = math.log(2.0)


def logistic_noise(u: Tensor) -> Tensor:
    """delta(u) = 1/2 log(u / (1 - u)) of Eq 50, for u in [0, 1) (u = 0 is moved to the tiniest
    positive float, so that torch.rand never gives -inf)."""
    u = u.clamp_min(torch.finfo(u.dtype).tiny)
    return 0.5 * (torch.log(u) - torch.log1p(-u))


def concrete(lam: Tensor, delta: Tensor, tau: float) -> Tensor:
    """The Concrete draw theta_hat = tanh((lam + delta) / tau) of Eq 50, in (-1, 1).

    With delta = :func:`logistic_noise` (u), theta_hat > 0 exactly when a draw of
    q(theta = +1) = sigmoid(2 lam) is +1, for every tau; as tau -> 0 it tends to sign(lam + delta).
    The relaxed {0, 1} dropout mask of Concrete dropout is (1 + theta_hat) / 2 at
    lam = logit(pi1) / 2.
    """
    return torch.tanh((lam + delta) / tau)


def log_sech2(x: Tensor) -> Tensor:
    """log(1 - tanh(x)^2) = 2 (log 2 - |x| - log(1 + exp(-2|x|))), finite for every finite x.

    Computing 1 - tanh(x)^2 directly gives exactly 0 for |x| > 9 in float32 (> 19 in float64).
    """
    a = x.abs()
    return 2.0 * (LOG2 - a - F.softplus(-2.0 * a))


def relaxed_scale(lam: Tensor, delta: Tensor, tau: float, eps: float = 0.0) -> Tensor:
    """s = d theta_hat / d mu = (1 - theta_hat^2) / (tau (1 - tanh(lam)^2)) of Eq 51-52.

    Computed in log space, log(sech^2((lam + delta) / tau) + eps) - log(sech^2(lam) + eps)
    - log tau, so that neither 1 - theta_hat^2 nor 1 - mu^2 is formed by cancellation and
    both may underflow without a 0 / 0: the result is the same in float32 and float64 (to
    rounding). log s is capped at the log of a tenth of the dtype's largest value, so that s
    is always finite.

    With ``eps = 0`` this is Eq 51's s exactly. As tau -> 0 it is a spike: 0 for almost every
    draw (1 - theta_hat^2 ~ 4 exp(-2 |lam + delta| / tau)) and about 1 / tau on a set of
    draws of probability about tau, so that its mean stays near 1 while its variance grows
    like 1 / tau; at tau = 1e-10 (Meng et al. 2020) it is 0 for every draw in practice. The
    reference code adds eps = 1e-10 to both parts, s = (1 - theta_hat^2 + eps) / (tau (1 -
    mu^2 + eps)); at tau = eps this is about 1 / (1 - mu^2 + eps) for almost every draw,
    which is not Eq 51's s but keeps the data term alive (``optim.BayesBiNN``'s default).

    Args:
        lam: natural parameters, any shape. delta: the logistic noise, same shape.
        tau: the temperature, > 0.
        eps: >= 0; added to 1 - theta_hat^2 and to 1 - mu^2 as in the reference code.

    Returns:
        s, the shape of ``lam``.
    """
    num, den = log_sech2((lam + delta) / tau), log_sech2(lam)
    if eps > 0:
        log_eps = torch.full((), math.log(eps), dtype=lam.dtype, device=lam.device)
        num, den = torch.logaddexp(num, log_eps), torch.logaddexp(den, log_eps)
    log_s = num - den - math.log(tau)
    cap = math.log(torch.finfo(lam.dtype).max) - math.log(10.0)
    return log_s.clamp_max(cap).exp()


def _sign(x: Tensor) -> Tensor:
    """sign with sign(0) = +1, as the reference STE code maps 0."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


class SignBernoulli(ExponentialFamily):
    """P independent variables theta_j in {-1, +1} with q(theta_j = 1) = sigmoid(2 lam_j) (Eq 49).

    Args:
        dim: the number P of binary weights.
        tau: the temperature of the Concrete relaxation (Eq 50) used by the relaxed estimator
            of Eq 51 (``estimator="mc"``); > 0.
        dtype, device: of draws.

    Raises:
        TypeError, ValueError: ``tau`` not a positive finite float (named), bad ``dim``/``dtype``.
    """

    order = Order.FIRST

    def __init__(
        self,
        dim: int,
        *,
        tau: float = 1.0,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(dim, dtype=dtype, device=device)
        self.tau = positive_float(tau, "tau")

    def __repr__(self) -> str:
        return f"SignBernoulli(dim={self.dim}, tau={self.tau}, dtype={self.dtype})"

    def natural_shapes(self) -> tuple[tuple[int, ...], ...]:
        """((P,),)."""
        return ((self.dim,),)

    def log_partition(self, lam: Params) -> Tensor:
        """A(lam) = sum log(exp(lam) + exp(-lam)) = sum log(2 cosh lam)."""
        return torch.logaddexp(lam[0], -lam[0]).sum()

    def to_expectation(self, lam: Params) -> Params:
        """mu = (tanh(lam),) = (2p - 1,)."""
        return (torch.tanh(lam[0]),)

    def to_natural(self, mu: Params) -> Params:
        """lam = (atanh(mu),) = (1/2 log(p / (1 - p)),)."""
        return (torch.atanh(mu[0]),)

    def probs(self, lam: Params) -> Tensor:
        """p = q(theta = +1) = sigmoid(2 lam), shape (P,)."""
        return torch.sigmoid(2.0 * lam[0])

    def sufficient_statistics(self, theta: Tensor) -> Params:
        """T(theta) = (theta,), shape (..., P)."""
        return (theta,)

    def log_base_measure(self, theta: Tensor) -> Tensor:
        """log h(theta) = 0 on {-1, +1}^P; shape (...)."""
        return theta.new_zeros(theta.shape[:-1])

    def log_prob(self, lam: Params, theta: Tensor) -> Tensor:
        """<lam, theta> - A(lam) for theta (..., P) in {-1, +1}^P -> (...)."""
        self._check_theta(theta)
        return (theta * lam[0] - torch.logaddexp(lam[0], -lam[0])).sum(-1)

    def rsample(self, lam: Params, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Not available: the draws are discrete. Use :meth:`relaxed_sample` (Eq 50).

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError(
            "SignBernoulli draws are not reparameterisable (theta is discrete); use "
            "SignBernoulli.relaxed_sample (Eq 50) or SignBernoulli.sample"
        )

    def sample(self, lam: Params, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n independent draws in {-1, +1}, shape (n, P), detached from the graph."""
        self._check_n(n)
        probs = self.probs(tuple(p.detach() for p in lam)).to(self.dtype).expand(n, self.dim)
        return 2.0 * torch.bernoulli(probs, generator=generator) - 1.0

    def noise(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n rows of the logistic noise delta(u) of Eq 50, shape (n, P)."""
        self._check_n(n)
        u = torch.rand(n, self.dim, generator=generator, dtype=self.dtype, device=self.device)
        return logistic_noise(u)

    def relaxed_sample(
        self,
        lam: Params,
        n: int,
        *,
        noise: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """theta_hat = tanh((lam + delta) / tau) (Eq 50), shape (n, P), differentiable in lam.

        With ``noise=False`` delta = 0: the deterministic point tanh(lam / tau), which is mu at
        tau = 1 and sign(lam) as tau -> 0.
        """
        delta = self.noise(n, generator=generator) if noise else lam[0].new_zeros(n, self.dim)
        return concrete(lam[0], delta, self.tau)

    def relaxed_expected_loss(
        self,
        mu: Params,
        loss: Callable[[Tensor], Tensor],
        *,
        relaxed: bool,
        n_samples: int,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """A scalar function of mu whose gradient is the relaxed natural gradient of E_q[loss].

        ``relaxed=True`` (Eq 51): the mean of loss(theta_hat) over ``n_samples`` Concrete draws
        theta_hat = tanh((atanh(mu) + delta) / tau); autograd's chain rule gives
        s * grad loss(theta_hat) with s = d theta_hat / d mu.
        ``relaxed=False`` (STE's gradient, Eq 48): loss at the binary point sign(mu) with the
        straight-through Jacobian d theta / d mu = 1. This is a hybrid of two limits, not a
        limit of Eq 51: with the noise off, tau = 1 gives the delta method (App C), the loss
        at tanh(lam / tau) = mu with s = 1; tau -> 0 gives the loss at sign(mu), but there
        s -> 0 and the step vanishes. STE takes the point of the second and the Jacobian of
        the first (see tests/families/test_sign_bernoulli.py).
        """
        m = mu[0]
        if not relaxed:
            return loss(_sign(m.detach()) + m - m.detach())
        delta = self.noise(n_samples, generator=generator)
        theta = concrete(torch.atanh(m), delta, self.tau)
        return vmap(loss)(theta).mean()

    def neg_entropy_natural_gradient(self, lam: Params) -> Params:
        """grad_mu E_q[log q] = lam, since h is constant (App B, Eq 64)."""
        return tuple(lam)

    def _check_expectation_values(self, mu: Params, name: str) -> None:
        if not (mu[0].abs() < 1).all():
            raise ValueError(f"{name}[0] (the means 2p - 1) must lie strictly in (-1, 1)")


def bayesbinn_update_(
    lams: list[Tensor],
    grads: list[Tensor],
    *,
    lr: float,
    n_data: float,
    priors: list[Tensor] | None,
    entropy: bool = True,
    beta: float = 0.0,
    momenta: list[Tensor] | None = None,
    step: int = 1,
    clip: float | None = None,
    beta2: float = 0.0,
    second_moments: list[Tensor] | None = None,
) -> None:
    """One BLR step of the {-1, +1} Bernoulli in place: BayesBiNN (Eq 52) and STE (Eq 48).

    Implements Eq 49 / 52 of Khan & Rue (2023) with a prior lam_0 (Eq 54's conjugate form):

        d <- N g + (lam - lam_0),   lam <- lam - lr d,

    where g estimates grad_mu E_q[batch-mean loss] (s * grad at a relaxed draw for BayesBiNN,
    the gradient at sign(lam) for STE). Eq 49 and 52 write the minibatch sum; N times the
    batch mean is its unbiased estimate of the sum over all N examples, so that the entropy
    and prior keep their weight relative to the data whatever the batch size. With lr = rho
    this is ``blr.step`` with :class:`SignBernoulli` and ``prior=lam_0``
    (tests/optim/test_bayesbinn.py). Options, each a departure that the reference code or STE
    practice makes:

    * ``beta``, ``momenta``: d is replaced by m <- beta m + (1 - beta) d, bias-corrected by
      1 - beta^step (Meng et al. 2020's code; beta = 0 gives Eq 52).
    * ``beta2``, ``second_moments``: d is further divided by sqrt(v_hat) + 1e-8 with
      v <- beta2 v + (1 - beta2) d^2, bias-corrected: Adam's step, which the STE baseline of
      Meng et al. (2020) uses (``beta2 = 0``: no division).
    * ``entropy=False``: drops (lam - lam_0), the natural gradient of the entropy and the prior;
      with the delta method and ``clip`` this is STE (Eq 48), which has no entropy term.
    * ``clip``: clamps lam to [-clip, clip] after the step (STE practice clips to [-1, 1]).

    Args:
        lams: the natural parameters lam (the latent weights), updated in place.
        grads: the estimates g, shaped like ``lams``.
        lr: the learning rate rho. n_data: N. priors: lam_0 per tensor, or None for lam_0 = 0.
        entropy, beta, momenta, step, clip, beta2, second_moments: see above.

    Raises:
        ValueError: ``beta`` or ``beta2`` > 0 without its buffers.
    """
    d = torch._foreach_mul(grads, n_data)
    if entropy:
        torch._foreach_add_(d, lams)
        if priors is not None:
            torch._foreach_sub_(d, priors)
    if beta2 != 0:
        if second_moments is None:
            raise ValueError("second_moments: beta2 > 0 needs a buffer per tensor")
        torch._foreach_mul_(second_moments, beta2)
        torch._foreach_addcmul_(second_moments, d, d, value=1.0 - beta2)
    if beta != 0:
        if momenta is None:
            raise ValueError("momenta: beta > 0 needs a momentum buffer per tensor")
        torch._foreach_mul_(momenta, beta)
        torch._foreach_add_(momenta, d, alpha=1.0 - beta)
        torch._foreach_copy_(d, momenta)
        torch._foreach_div_(d, 1.0 - beta**step)
    if beta2 != 0:
        denom = torch._foreach_div(second_moments, 1.0 - beta2**step)
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, 1e-8)
        torch._foreach_div_(d, denom)
    torch._foreach_add_(lams, d, alpha=-lr)
    if clip is not None:
        torch._foreach_clamp_min_(lams, -clip)
        torch._foreach_clamp_max_(lams, clip)
