"""Inverse maps mu -> lam of the digamma families (Beta, Gamma, Dirichlet, Normal-Gamma).

Their expectation parameters involve the digamma function psi, so mu -> lam has no closed
form. Each solver iterates without gradients to machine precision and then takes one more
Newton step with gradients on: at the fixed point that step changes no value, but it carries
the exact derivative d lam / d mu = J^-1 (the implicit-function theorem), so the inverse maps
can be differentiated (App B's check grad_mu -H = lam uses this).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["dirichlet_from_mean_log", "gamma_shape_from_log_gap", "standard_gamma"]

_MAX_ITER = 100


def _dirichlet_newton(alpha: Tensor, mu: Tensor) -> Tensor:
    """One Newton step on F(alpha) = psi(alpha) - psi(sum alpha) - mu (last axis = K).

    The Jacobian diag(psi'(alpha)) - psi'(alpha_0) 1 1^T is inverted by Sherman-Morrison.
    """
    total = alpha.sum(-1, keepdim=True)
    f = torch.digamma(alpha) - torch.digamma(total) - mu
    q = torch.polygamma(1, alpha)
    z = -torch.polygamma(1, total)
    b = (f / q).sum(-1, keepdim=True) / (1.0 / z + (1.0 / q).sum(-1, keepdim=True))
    return (f - b) / q


def dirichlet_from_mean_log(mu: Tensor) -> Tensor:
    """alpha > 0 with psi(alpha_k) - psi(sum_j alpha_j) = mu_k, batched over leading axes.

    Minka's (2000) starting point, then safeguarded Newton steps (a step never shrinks alpha
    by more than a factor 10), then one differentiable Newton step.

    Args:
        mu: E[log theta] of a Dirichlet, shape (..., K) with K >= 2 and every entry < 0.

    Returns:
        alpha, shape (..., K).
    """
    with torch.no_grad():
        m = mu.detach()
        # Minka: alpha_0 from the two-moment match of E[log theta], then alpha_k proportional
        # to exp(mu_k); any positive start works for the safeguarded Newton iteration.
        p = m.exp() / m.exp().sum(-1, keepdim=True)
        alpha = p * (m.shape[-1] - 1) / (2.0 * (-(p * m).sum(-1, keepdim=True)).clamp_min(1e-12))
        alpha = alpha.clamp_min(1e-8)
        for _ in range(_MAX_ITER):
            delta = _dirichlet_newton(alpha, m)
            alpha = torch.maximum(alpha - delta, alpha / 10.0)
            if (delta.abs() <= 1e-15 * alpha).all():
                break
    return alpha - _dirichlet_newton(alpha, mu)


def _gamma_newton(a: Tensor, gap: Tensor) -> Tensor:
    """One Newton step on f(a) = log a - psi(a) - gap."""
    return (a.log() - torch.digamma(a) - gap) / (1.0 / a - torch.polygamma(1, a))


def gamma_shape_from_log_gap(gap: Tensor) -> Tensor:
    """The shape a > 0 with log a - psi(a) = gap (> 0), elementwise.

    For a Gamma(a, b), gap = log E[theta] - E[log theta] (Minka 2002). Minka's starting point,
    safeguarded Newton steps, then one differentiable Newton step.

    Args:
        gap: log E[theta] - E[log theta], any shape, every entry > 0.

    Returns:
        The shape a, same shape as ``gap``.
    """
    with torch.no_grad():
        s = gap.detach()
        a = (3.0 - s + ((s - 3.0) ** 2 + 24.0 * s).sqrt()) / (12.0 * s)
        for _ in range(_MAX_ITER):
            delta = _gamma_newton(a, s)
            a = torch.maximum(a - delta, a / 10.0)
            if (delta.abs() <= 1e-15 * a).all():
                break
    return a - _gamma_newton(a, gap)


def standard_gamma(alpha: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Gamma(alpha, 1) draws, reparameterised (implicit gradients, as in torch.distributions).

    ``torch._standard_gamma`` takes no generator, so a given ``generator`` seeds a forked
    global stream: the draws are reproducible from ``generator`` and leave the global stream
    untouched.

    Args:
        alpha: shapes, any shape (broadcast beforehand to the wanted output shape).
        generator: optional random generator.
    """
    if generator is None:
        return torch._standard_gamma(alpha)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    devices = [alpha.device] if alpha.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return torch._standard_gamma(alpha)
