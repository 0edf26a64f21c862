"""The Bayesian learning rule (Khan & Rue 2023, Eq 3-6): one engine for every algorithm.

    from blrlib import blr, families
    q = families.Gaussian(2, dtype=torch.float64)
    lam = q.natural_from_moments(torch.zeros(2), torch.eye(2))
    lam = blr.step(q, lam, loss, rho=1.0, estimator="delta")  # one Newton step (Sec 1.3.2)
    m, cov = q.mean_cov(lam)

The rule updates the natural parameters lam of a candidate q in a family Q,

    lam <- lam - rho * grad_mu (E_q[bar-ell(theta)] - H(q))            (Eq 3 with Eq 4)
         = (1 - rho) lam - rho * grad_mu E_q[bar-ell(theta) + log h(theta)]   (Eq 6),

where grad_mu, the gradient with respect to the expectation parameters, is the natural gradient.
The choice of family and of the estimator of grad_mu E_q[.] (``blrlib.estimators``) is all that
distinguishes gradient descent, Newton's method, ridge regression, and the rest of Table 1.

Derived in :doc:`/book/blr`; the reductions to gradient descent, Newton and ridge in
:ref:`gnr-gd`, :ref:`gnr-newton` and :ref:`gnr-ridge`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from blrlib.estimators import Estimator, Hessian, natural_gradient, parse_option
from blrlib.families import ExponentialFamily, Params

__all__ = ["bayes_gradient", "bayes_objective", "run", "step"]


def _check_rho(rho: float) -> None:
    if isinstance(rho, bool) or not isinstance(rho, (int, float)):
        raise TypeError(f"rho must be a float in (0, 1]; got {type(rho).__name__}")
    if not (math.isfinite(rho) and 0.0 < rho <= 1.0):
        raise ValueError(f"rho must be in (0, 1]; got {rho!r}")


def bayes_objective(
    family: ExponentialFamily,
    lam: Params,
    loss: Callable[[Tensor], Tensor] | None = None,
    *,
    expected_loss: Callable[[Params], Tensor] | None = None,
    n_samples: int = 1000,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The Bayes objective E_q[bar-ell(theta)] - H(q) that the rule minimises (Eq 2).

    With the prior inside bar-ell, Eq 2 is this objective up to a constant; its minimum over all
    distributions is -log Z, attained by the Gibbs posterior exp(-bar-ell) / Z.

    Args:
        family, lam: the candidate q.
        loss: theta (P,) -> scalar, averaged over ``n_samples`` draws when ``expected_loss``
            is not given (a Monte Carlo estimate).
        expected_loss: mu -> E_q[bar-ell] in closed form (exact).
        n_samples, generator: for the Monte Carlo estimate.
    """
    family.check_natural(lam, "lam")
    if expected_loss is not None:
        value = expected_loss(family.to_expectation(lam))
    elif loss is not None:
        draws = family.rsample(lam, n_samples, generator=generator)
        value = torch.vmap(loss)(draws).mean()
    else:
        raise ValueError("loss: bayes_objective needs loss or expected_loss")
    return value - family.entropy(lam)


def bayes_gradient(
    family: ExponentialFamily,
    lam: Params,
    loss: Callable[[Tensor], Tensor] | None = None,
    *,
    estimator: Estimator | str = Estimator.DELTA,
    hessian: Hessian | str = Hessian.AUTOGRAD,
    prior: Params | None = None,
    expected_loss: Callable[[Params], Tensor] | None = None,
    n_samples: int | None = None,
    generator: torch.Generator | None = None,
    masks: Tensor | None = None,
) -> Params:
    """The natural gradient of the Bayes objective, grad_mu (E_q[bar-ell] - H(q)) (Eq 2-4).

    For an exponential family the entropy term is exact: grad_mu(-H(q)) = lam + grad_mu
    E_q[log h] (App B, Eq 64).
    For a mixture it has no closed form, and log q(theta) joins the loss inside the expectation,
    as in Eq 28 and Eq 67-68 (its parameters held fixed: the score has zero mean).
    With a conjugate ``prior`` lam_0 (a member of the same family), the loss is the data term
    only, and E_q[-log p(theta)] contributes -lam_0 - grad_mu E_q[log h] exactly, so that the
    base measure cancels: the gradient is grad_mu E_q[loss] + lam - lam_0 (Sec 5.1, Eq 54).

    Args:
        family: the candidate family Q.
        lam: natural parameters of q.
        loss: theta (P,) -> scalar total loss (Eq 1), or the data term when ``prior`` is given.
        estimator: ``"exact"``, ``"delta"`` or ``"mc"`` (``blrlib.estimators.Estimator``).
        hessian: ``"autograd"``, ``"gauss_newton"`` or ``"reparam"`` (second-order families).
        prior: natural parameters lam_0 of a conjugate prior in ``family``, or None when the
            prior is inside ``loss``.
        expected_loss: mu -> E_q[loss] in closed form, for ``estimator="exact"``.
        n_samples: Monte Carlo draws for ``estimator="mc"``; required there (without it one
            draw is taken, with a warning).
        generator: random generator for the draws.
        masks: unit masks z (J,) for ``estimator="dropout"`` (spike-and-slab family, App G);
            with it the entropy term is Eq 85-86's responsibility approximation.

    Returns:
        A tuple shaped like ``lam``.

    Raises:
        TypeError, ValueError: invalid ``lam`` or ``prior``, unknown options, non-finite loss.
    """
    family.check_natural(lam, "lam")
    if prior is not None:
        if not family.closed_form_entropy_gradient:
            raise TypeError(
                f"prior: a conjugate prior is not defined for {type(family).__name__}; "
                "add -log p(theta) to the loss instead"
            )
        family.check_natural(prior, "prior")
    dropout = parse_option(estimator, Estimator, "estimator") is Estimator.DROPOUT
    if family.closed_form_entropy_gradient:
        integrand = loss
        neg_entropy = family.neg_entropy_natural_gradient(lam)
    elif dropout and hasattr(family, "approx_neg_entropy_natural_gradient"):
        integrand = loss  # Eq 85-86: log q leaves the expectation, r(theta) ~ 1
        neg_entropy = family.approx_neg_entropy_natural_gradient(lam)
    else:
        if parse_option(estimator, Estimator, "estimator") is Estimator.EXACT:
            raise ValueError(
                f"estimator: 'exact' is not available for {type(family).__name__}, whose "
                "entropy has no closed form; use 'delta' or 'mc'"
            )
        if parse_option(hessian, Hessian, "hessian") is Hessian.GAUSS_NEWTON:
            raise ValueError(
                f"hessian: 'gauss_newton' does not apply to the entropy of "
                f"{type(family).__name__}; use 'autograd' or 'reparam'"
            )
        if loss is None:
            raise ValueError("loss: the mixture rule needs the loss function")
        frozen = tuple(p.detach() for p in lam)

        def integrand(theta: Tensor) -> Tensor:
            return loss(theta) + family.log_prob(frozen, theta)

        neg_entropy = tuple(torch.zeros_like(p) for p in lam)
    grad = natural_gradient(
        family,
        lam,
        integrand,
        estimator=estimator,
        hessian_method=hessian,
        expected_loss=expected_loss,
        n_samples=n_samples,
        generator=generator,
        masks=masks,
    )
    if prior is None:
        return tuple(g + h for g, h in zip(grad, neg_entropy, strict=True))
    return tuple(g + p - p0 for g, p, p0 in zip(grad, lam, prior, strict=True))


def step(
    family: ExponentialFamily,
    lam: Params,
    loss: Callable[[Tensor], Tensor] | None = None,
    *,
    rho: float,
    estimator: Estimator | str = Estimator.DELTA,
    hessian: Hessian | str = Hessian.AUTOGRAD,
    prior: Params | None = None,
    expected_loss: Callable[[Params], Tensor] | None = None,
    n_samples: int | None = None,
    generator: torch.Generator | None = None,
    masks: Tensor | None = None,
) -> Params:
    """One step of the Bayesian learning rule, lam <- lam - rho * grad_mu(E_q[loss] - H(q)).

    Implements Eq 3 of Khan & Rue (2023) in the form of Eq 6,
    lam <- (1 - rho) lam - rho grad_mu E_q[bar-ell(theta) + log h(theta)], and, with a
    conjugate prior, lam <- (1 - rho) lam + rho (lam_0 - grad_mu E_q[loss]) (Eq 54 at rho = 1).
    Arguments are those of :func:`bayes_gradient`, plus the learning rate ``rho``.

    Returns:
        The new natural parameters.

    Raises:
        TypeError, ValueError: for bad input (see :func:`bayes_gradient`), ``rho`` outside
            (0, 1], or a step that leaves the family's parameter space (for example a
            precision that is no longer positive definite: lower ``rho``, or use
            ``hessian="gauss_newton"``, whose curvature is never negative).
    """
    _check_rho(rho)
    grad = bayes_gradient(
        family,
        lam,
        loss,
        estimator=estimator,
        hessian=hessian,
        prior=prior,
        expected_loss=expected_loss,
        n_samples=n_samples,
        generator=generator,
        masks=masks,
    )
    new = tuple((p - rho * g).detach() for p, g in zip(lam, grad, strict=True))
    try:
        family.check_natural(new, "lam")
    except ValueError as err:
        raise ValueError(
            f"rho: the step with rho={rho} left the natural-parameter space ({err}); "
            "lower rho or use a curvature estimate that is positive (hessian='gauss_newton')"
        ) from err
    return new


def run(
    family: ExponentialFamily,
    lam: Params,
    loss: Callable[[Tensor], Tensor] | None = None,
    *,
    rho: float,
    n_steps: int,
    progress: bool = False,
    **options: Any,
) -> list[Params]:
    """Iterate :func:`step` ``n_steps`` times and return every iterate, the initial one first.

    Args:
        family, lam, loss, rho: as in :func:`step`.
        n_steps: number of BLR steps (a non-negative integer).
        progress: show a tqdm progress bar.
        **options: the keyword arguments of :func:`step` (estimator, hessian, prior, ...).

    Returns:
        The list [lam_0, lam_1, ..., lam_n_steps].
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative integer; got {n_steps!r}")
    path = [tuple(p.detach() for p in lam)]
    for _ in tqdm(range(n_steps), disable=not progress, desc="BLR"):
        path.append(step(family, path[-1], loss, rho=rho, **options))
    return path
