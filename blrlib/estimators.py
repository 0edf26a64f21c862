"""Estimators of the natural gradient that the Bayesian learning rule needs.

    from blrlib import estimators, families
    q = families.Gaussian(2, dtype=torch.float64)
    lam = q.natural_from_moments(torch.zeros(2), torch.eye(2))
    grad_mu = estimators.natural_gradient(q, lam, loss, estimator="mc", n_samples=64)
    # grad_mu is the gradient of E_q[loss] with respect to q's expectation parameters (Eq 4)

The natural gradient of E_q[loss] is its gradient with respect to the expectation parameters mu
(Khan & Rue, Eq 4).
Every estimator here computes it by automatic differentiation with respect to mu:

* ``exact``: the caller writes E_q[loss] in closed form as a function of mu, and autograd
  differentiates it.
* ``mc``, ``delta`` for the {-1, +1} Bernoulli (``SignBernoulli``, Sec 4.5): the Concrete
  relaxation of Eq 50-51 (``mc``: loss at tanh((lam + delta) / tau), differentiated with respect
  to mu), or STE's gradient (``delta``: loss at sign(mu), straight-through Jacobian 1; the
  point of the tau -> 0 limit with the Jacobian of the delta method, a hybrid of the two).
* ``delta``, ``mc``: for Gaussian candidates, Bonnet's and Price's theorems (App D) say that
  dE_q[loss]/dm = E_q[grad loss] and dE_q[loss]/dcov = E_q[Hessian loss] / 2.
  These two expectations are estimated in theta-space, either at the mean (the delta method,
  App C) or by Monte Carlo, and plugged into the family's ``expected_loss_surrogate``, a
  function of mu that is linear in (m, cov) with exactly those derivatives.
  Its gradient with respect to mu is Eq 10-11 for the full Gaussian and App E for mixtures.

How E_q[Hessian loss] is obtained is a second, independent choice (``hessian``):
``autograd`` (exact Hessians at the evaluation points), ``gauss_newton`` (the sum of squared
per-example gradients of Eq 45, for a :class:`SumLoss`: the paper's name for what is strictly
the empirical Fisher, not a generalised Gauss-Newton matrix) or ``reparam`` (Price's theorem in the
Hessian-free form E_q[S (theta - m) grad loss^T], Monte Carlo only).

* ``dropout`` (spike-and-slab family only, App G): one draw of the unit masks z, noise ignored,
  derivatives at the dropout mean z * m (the delta method of Eq 84), see :func:`dropout_grad_hess`.

Derived in :ref:`gnr-newton` (delta method and Monte Carlo, App D), :ref:`optim-ogn`
(Gauss-Newton, Eq 45), :ref:`binary-bayesbinn` (Concrete, Eq 50-51) and
:ref:`dropout-derivation` (dropout, Eq 84).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor
from torch.func import grad_and_value, hessian, jacrev, vmap

from blrlib.families import ExponentialFamily, Order, Params

__all__ = [
    "Estimator",
    "Hessian",
    "SumLoss",
    "draw_masks",
    "dropout_grad_hess",
    "expected_grad_hess",
    "natural_gradient",
]


class Estimator(str, Enum):
    """How the expectation E_q[.] in the natural gradient is computed."""

    EXACT = "exact"
    DELTA = "delta"
    MC = "mc"
    DROPOUT = "dropout"


class Hessian(str, Enum):
    """How E_q[Hessian of the loss] is computed for second-order (diag / full) families."""

    AUTOGRAD = "autograd"
    GAUSS_NEWTON = "gauss_newton"
    REPARAM = "reparam"


@dataclass(frozen=True)
class SumLoss:
    """A loss bar-ell(theta) = sum_i ell_i(theta) + R(theta) (Eq 1) with its terms kept apart.

    The Gauss-Newton Hessian of Eq 45 needs the per-example terms; every other estimator only
    calls the object as a function of theta.

    Args:
        per_example: maps theta (P,) to the per-example losses ell_i(theta), shape (N,).
        regulariser: maps theta (P,) to R(theta) = -log p(theta) up to a constant, or None.
    """

    per_example: Callable[[Tensor], Tensor]
    regulariser: Callable[[Tensor], Tensor] | None = None

    def __call__(self, theta: Tensor) -> Tensor:
        total = self.per_example(theta).sum()
        if self.regulariser is not None:
            total = total + self.regulariser(theta)
        return total


def parse_option(value: object, enum: type[Enum], name: str) -> Enum:
    """Turn a string option into ``enum``, raising a ValueError that lists the allowed values."""
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(repr(e.value) for e in enum)
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}") from None


def _check_finite(values: Tensor, grads: Tensor, what: str) -> None:
    if not torch.isfinite(values).all():
        raise ValueError(f"loss: returned a non-finite value ({what}); got {values.flatten()[:4]}")
    if not torch.isfinite(grads).all():
        raise ValueError(f"loss: its gradient is not finite ({what})")


def _grads_and_values(loss: Callable[[Tensor], Tensor], thetas: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients and values of the loss at each row of ``thetas`` (vmapped unless one row)."""
    try:
        if thetas.shape[0] == 1:  # the delta method for one Gaussian: no need to vmap
            grad, value = grad_and_value(loss)(thetas[0])
            return grad.unsqueeze(0), value.unsqueeze(0)
        return vmap(grad_and_value(loss))(thetas)
    except RuntimeError as err:
        if "scalar" not in str(err):
            raise
        raise ValueError(
            f"loss: must map theta of shape ({thetas.shape[-1]},) to a scalar tensor ({err})"
        ) from err


def _gauss_newton(loss: Callable[[Tensor], Tensor], thetas: Tensor, order: Order) -> Tensor:
    """Eq 45: sum_i (grad ell_i)(grad ell_i)^T + Hessian of R at each theta (rows of thetas)."""
    if not isinstance(loss, SumLoss):
        raise TypeError("loss: hessian='gauss_newton' needs a blrlib.estimators.SumLoss")
    jac = vmap(jacrev(loss.per_example))(thetas)  # (n, N, P)
    if order is Order.DIAG:
        gn = (jac**2).sum(-2)
    else:
        gn = torch.einsum("nip,niq->npq", jac, jac)
    if loss.regulariser is not None:
        reg = vmap(hessian(loss.regulariser))(thetas)
        gn = gn + (torch.diagonal(reg, dim1=-2, dim2=-1) if order is Order.DIAG else reg)
    return gn


def _reparam_hessian(
    grads: Tensor, thetas: Tensor, mean: Tensor, cov: Tensor, order: Order
) -> Tensor:
    """Price's theorem without second derivatives: E_q[H] = E_q[S (theta - m) g^T] (symmetrised).

    This is the identity behind the Hessian estimate of variational online Newton (Sec 4.4):
    with theta = m + eps, E[S eps g(theta)^T] = E[Hessian] by Stein's lemma.
    """
    if order is Order.DIAG:
        return (thetas - mean) / cov * grads
    prec_eps = torch.linalg.solve(cov, (thetas - mean).unsqueeze(-1)).squeeze(-1)
    outer = prec_eps.unsqueeze(-1) * grads.unsqueeze(-2)
    return 0.5 * (outer + outer.transpose(-1, -2))


def expected_grad_hess(
    family: ExponentialFamily,
    lam: Params,
    loss: Callable[[Tensor], Tensor],
    *,
    estimator: Estimator | str,
    hessian_method: Hessian | str = Hessian.AUTOGRAD,
    n_samples: int = 1,
    generator: torch.Generator | None = None,
    with_values: bool = False,
) -> tuple[Tensor, ...]:
    """Estimate E_q[grad loss] and E_q[Hessian loss] for a Gaussian family (Bonnet and Price).

    Implements App C (delta method: both expectations at the mean) and App D (Monte Carlo over
    reparameterised draws theta = m + L eps) of Khan & Rue (2023).
    For a mixture the expectations are per component, E_{q_k}[.] (App E).

    Args:
        family: a Gaussian family (it must provide ``mean_cov``).
        lam: natural parameters of q.
        loss: theta (P,) -> scalar; must be a pure torch function (it is vmapped).
        estimator: ``Estimator.DELTA`` or ``Estimator.MC``.
        hessian_method: how the Hessian expectation is formed (second-order families only).
        n_samples: Monte Carlo draws per component.
        generator: random generator for the draws.
        with_values: also return E_q[loss] (per component for a mixture), which a mixture with
            learned weights needs.

    Returns:
        (grad, hess): grad of shape (P,) or (K, P); hess of shape (P,), (P, P), (K, P, P), or
        None for first-order families; with ``with_values``, (grad, hess, values) with values of
        shape () or (K,).

    Raises:
        ValueError: if the loss or its gradient is not finite, an option is unknown, or
            ``reparam`` is used with the delta method.
    """
    estimator = parse_option(estimator, Estimator, "estimator")
    hessian_method = parse_option(hessian_method, Hessian, "hessian")
    if estimator in (Estimator.EXACT, Estimator.DROPOUT):
        raise ValueError(
            f"estimator: expected_grad_hess estimates by 'delta' or 'mc', not {estimator.value!r}"
        )
    mean, cov = family.mean_cov(lam)
    mean, cov = mean.detach(), cov.detach()
    components = mean.dim() == 2  # a mixture: one row of theta-space statistics per component
    means = mean if components else mean.unsqueeze(0)
    covs = cov if components else cov.unsqueeze(0)
    diagonal = cov.dim() == mean.dim()  # variances (P,) rather than a covariance (P, P)
    if estimator is Estimator.DELTA:
        thetas = means.unsqueeze(1)  # (K, 1, P)
    else:
        eps = torch.randn(
            (means.shape[0], n_samples, means.shape[-1]),
            generator=generator,
            dtype=means.dtype,
            device=means.device,
        )
        if diagonal:
            thetas = means.unsqueeze(1) + eps * covs.sqrt().unsqueeze(1)
        else:
            chol = torch.linalg.cholesky(covs)
            thetas = means.unsqueeze(1) + torch.einsum("kpq,knq->knp", chol, eps)
    flat = thetas.reshape(-1, thetas.shape[-1])
    grads, values = _grads_and_values(loss, flat)
    _check_finite(values, grads, "at the draws of theta" if estimator is Estimator.MC else "at m")
    grads = grads.reshape(thetas.shape)

    hess: Tensor | None = None
    if family.order is not Order.FIRST:
        if hessian_method is Hessian.AUTOGRAD:
            h = vmap(hessian(loss))(flat)
            if family.order is Order.DIAG:
                h = torch.diagonal(h, dim1=-2, dim2=-1)
        elif hessian_method is Hessian.GAUSS_NEWTON:
            h = _gauss_newton(loss, flat, family.order)
        else:
            if estimator is not Estimator.MC:
                raise ValueError("hessian: 'reparam' needs estimator='mc' (it averages draws)")
            h = _reparam_hessian(
                grads, thetas, means.unsqueeze(1), covs.unsqueeze(1), family.order
            ).reshape(flat.shape[0], *covs.shape[1:])
        if not torch.isfinite(h).all():
            raise ValueError("loss: its Hessian is not finite at the evaluation points")
        hess = h.reshape(thetas.shape[0], thetas.shape[1], *h.shape[1:]).mean(1)
        if not components:
            hess = hess.squeeze(0)
    grad = grads.mean(1)
    if with_values:
        value = values.reshape(thetas.shape[:2]).mean(1)
        return (grad, hess, value) if components else (grad.squeeze(0), hess, value.squeeze(0))
    return (grad if components else grad.squeeze(0)), hess


def draw_masks(family: ExponentialFamily, generator: torch.Generator | None = None) -> Tensor:
    """Unit masks z_j ~ Bernoulli(pi1), shape (J,), in the family's dtype (Eq 39)."""
    if not hasattr(family, "pi1"):
        raise TypeError(f"family: estimator='dropout' needs SpikeSlab; got {type(family).__name__}")
    shape = (family.n_units,)
    probs = torch.full(shape, family.pi1, dtype=family.dtype, device=family.device)
    return torch.bernoulli(probs, generator=generator)


def dropout_grad_hess(
    family: ExponentialFamily,
    lam: Params,
    loss: Callable[[Tensor], Tensor],
    masks: Tensor,
) -> tuple[Tensor, Tensor | None]:
    """Eq 84: the slab's E[grad] and E[Hessian] from one dropout draw, at the dropout mean.

    With theta~ = z * m (unit masks z, unscaled as in Eq 39, the Gaussian noise ignored),
    g = grad_theta loss(z * theta) at theta = m is z_j grad loss(theta~) per unit: a one-draw
    estimate of grad_{m_j} E_q[loss] = pi1 E_slab[grad loss] under the delta method.
    Dividing by pi1 gives the slab expectation that ``family.expected_loss_surrogate`` takes;
    that 1/pi1 is the one of Eq 42-43. The Hessian is the per-unit block of
    Hessian_theta loss(z * theta), z_j^2 Hessian loss(theta~), divided by pi1 likewise.

    Args:
        family: a :class:`blrlib.families.SpikeSlab`.
        lam: its natural parameters.
        loss: theta (JP,) -> scalar.
        masks: z, shape (J,), entries 0. or 1. in the family's dtype.

    Returns:
        (grad (J, P), hess (J, P, P) or None with a fixed precision).

    Raises:
        TypeError, ValueError: bad ``masks`` (naming it), or a non-finite loss.
    """
    from blrlib.families.spike_slab import SpikeSlab, check_masks

    if not isinstance(family, SpikeSlab):
        raise TypeError(f"family: estimator='dropout' needs SpikeSlab; got {type(family).__name__}")
    z = check_masks(masks, (family.n_units,), family.dtype)
    mean, _ = family.mean_cov(lam)
    zflat = z.unsqueeze(-1).expand_as(mean).reshape(-1)

    def masked(theta: Tensor) -> Tensor:
        return loss(zflat * theta)

    grad, value = grad_and_value(masked)(mean.detach().reshape(-1))
    _check_finite(value, grad, "at the dropout mean z * m")
    shape = (family.n_units, family.unit_dim)
    if family.fixed:
        return grad.view(shape) / family.pi1, None
    h = hessian(masked)(mean.detach().reshape(-1)).view(*shape, *shape)
    blocks = torch.diagonal(h, dim1=0, dim2=2).permute(2, 0, 1)  # (J, P, P): unit j's block
    return grad.view(shape) / family.pi1, blocks / family.pi1


def natural_gradient(
    family: ExponentialFamily,
    lam: Params,
    loss: Callable[[Tensor], Tensor] | None = None,
    *,
    estimator: Estimator | str = Estimator.DELTA,
    hessian_method: Hessian | str = Hessian.AUTOGRAD,
    expected_loss: Callable[[Params], Tensor] | None = None,
    n_samples: int | None = None,
    generator: torch.Generator | None = None,
    masks: Tensor | None = None,
) -> Params:
    """The natural gradient of E_q[loss]: its gradient with respect to mu (Eq 4).

    Implements Eq 4 of Khan & Rue (2023), F(lam)^-1 grad_lam E_q[loss] = grad_mu E_q[loss],
    by automatic differentiation with respect to mu = grad A(lam).

    Args:
        family: the candidate family Q.
        lam: natural parameters of q, a tuple of tensors.
        loss: theta (P,) -> scalar total loss bar-ell(theta) (Eq 1); unused with ``exact``.
        estimator: ``"exact"``, ``"delta"`` or ``"mc"`` (see the module docstring).
        hessian_method: ``"autograd"``, ``"gauss_newton"`` or ``"reparam"``.
        expected_loss: mu -> E_q[loss] in closed form; required by (and only used with) ``exact``.
        n_samples: Monte Carlo draws (per mixture component) for ``mc``. Without it ``mc``
            takes one draw, the one-sample step of VON and BayesBiNN, and warns: pass
            ``n_samples=1`` to ask for that noisy estimate explicitly.
        generator: random generator for ``mc`` (and for the masks of ``dropout``).
        masks: the unit masks z (J,) of ``dropout``; drawn from Bernoulli(pi1) when None.

    Returns:
        grad_mu E_q[loss], a tuple shaped like ``lam``.

    Raises:
        ValueError: unknown option, missing ``loss`` or ``expected_loss``, bad ``n_samples``,
            or a non-finite loss.
    """
    estimator = parse_option(estimator, Estimator, "estimator")
    hessian_method = parse_option(hessian_method, Hessian, "hessian")
    if n_samples is None:
        if estimator is Estimator.MC:
            warnings.warn(
                "n_samples: estimator='mc' without n_samples takes ONE draw per step (a noisy "
                "estimate); pass n_samples explicitly (n_samples=1 to keep one draw)",
                UserWarning,
                stacklevel=4,  # the caller of blr.step
            )
        n_samples = 1
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}")
    mu = tuple(m.detach().requires_grad_(True) for m in family.to_expectation(lam))
    if estimator is Estimator.EXACT:
        if expected_loss is None:
            raise ValueError("expected_loss: estimator='exact' needs E_q[loss] as a function of mu")
        value = expected_loss(mu)
        if value.dim() != 0:
            raise ValueError(f"expected_loss: must return a scalar; got shape {tuple(value.shape)}")
        if not torch.isfinite(value):
            raise ValueError(f"expected_loss: returned a non-finite value {value.item()}")
    elif estimator is Estimator.DROPOUT:
        if loss is None:
            raise ValueError("loss: estimator='dropout' needs the loss function")
        if masks is None:
            masks = draw_masks(family, generator)
        grad, hess = dropout_grad_hess(family, lam, loss, masks)
        value = family.expected_loss_surrogate(mu, grad, hess)
    else:
        if masks is not None:
            raise ValueError(f"masks: only used with estimator='dropout'; got {estimator.value!r}")
        if loss is None:
            raise ValueError(f"loss: estimator={estimator.value!r} needs the loss function")
        if hasattr(family, "relaxed_expected_loss"):  # the {-1, +1} Bernoulli (Eq 51, Eq 48)
            value = family.relaxed_expected_loss(
                mu, loss, relaxed=estimator is Estimator.MC, n_samples=n_samples,
                generator=generator,
            )  # fmt: skip
            if not torch.isfinite(value):
                raise ValueError(f"loss: returned a non-finite value {value.item()}")
            return torch.autograd.grad(value, mu)
        if not hasattr(family, "expected_loss_surrogate"):
            raise ValueError(
                f"estimator: {estimator.value!r} is defined for Gaussian families only; "
                f"use estimator='exact' for {type(family).__name__}"
            )
        needs_values = getattr(family, "surrogate_needs_values", False)  # learned mixture weights
        stats = expected_grad_hess(
            family,
            lam,
            loss,
            estimator=estimator,
            hessian_method=hessian_method,
            n_samples=n_samples,
            generator=generator,
            with_values=needs_values,
        )
        value = family.expected_loss_surrogate(mu, *stats)
    return torch.autograd.grad(value, mu)
