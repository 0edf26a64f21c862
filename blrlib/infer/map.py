"""The maximum a posteriori (MAP) estimate: the minimum of the total loss, found by L-BFGS.

    from blrlib.infer import BayesModel, fit_map
    bm = BayesModel(torch.nn.Linear(2, 1), "bernoulli", prior_precision=1.0)
    theta_map = fit_map(bm, X, y)     # argmin_theta sum_i nll_i(theta) + delta |theta|^2 / 2
    bm.load(theta_map)                # write it into the module, e.g. to predict with it
    probs = torch.sigmoid(bm.forward(theta_map, X))

The MAP is the point estimate that the Laplace approximation (``blrlib.infer.laplace``) expands
around, and the mean that the Bayesian learning rule's Newton step (Sec 1.3.2 of Khan & Rue,
2023) converges to.

**A Gaussian prior is weight decay.**
With the prior N(0, I / delta), the negative log posterior is, up to a constant,

    bar-ell(theta) = sum_i nll_i(theta) + delta/2 |theta|^2                      (Eq 1)
                   = N * [ mean_i nll_i(theta) + (delta / N)/2 |theta|^2 ],

so the MAP also minimises the *mean* loss plus (delta / N)/2 |theta|^2.
That is exactly what ``torch.optim`` optimisers do with ``weight_decay = delta / N`` on the
mean loss (for SGD and Adam weight decay adds ``weight_decay * theta`` to the gradient; AdamW's
decoupled decay is a different update).
Nothing else is provided for it: ``tests/infer/test_map.py`` trains the module with
``torch.optim.SGD(..., weight_decay=delta / N)`` and recovers :func:`fit_map`'s answer.

Derived in :ref:`primer-map`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from blrlib.infer.model import BayesModel

__all__ = ["fit_map"]

_POLISH_ITER = 20  # unit-step L-BFGS iterations after the line search stalls at rounding


def _check_theta0(bm: BayesModel, theta0: Tensor | None) -> Tensor:
    if theta0 is None:
        return bm.theta0()
    if not isinstance(theta0, Tensor):
        raise TypeError(
            f"theta0 must be a tensor of shape ({bm.dim},); got {type(theta0).__name__}"
        )
    if theta0.shape != (bm.dim,):
        raise ValueError(f"theta0 must have shape ({bm.dim},); got {tuple(theta0.shape)}")
    if not torch.is_floating_point(theta0) or not torch.isfinite(theta0).all():
        raise ValueError("theta0 must be a finite floating-point tensor")
    return theta0.detach().clone()


def fit_map(
    bm: BayesModel,
    X: Tensor,
    y: Tensor,
    *,
    theta0: Tensor | None = None,
    max_iter: int = 500,
    tol: float = 1e-10,
) -> Tensor:
    """The MAP estimate theta* = argmin_theta bar-ell(theta), by L-BFGS with a strong-Wolfe search.

    Implements the minimisation of Eq 1 of Khan & Rue (2023),
    bar-ell(theta) = sum_i -log p(y_i | x_i, theta) + delta/2 |theta|^2 (``bm.loss``), on the
    flat parameter vector theta. The total loss is used, not the mean; see the module docstring
    for the equivalent mean loss with weight decay delta / N.

    L-BFGS stops when max_p |d bar-ell / d theta_p| <= tol, and the result is accepted when the
    gradient is below max(tol, sqrt(eps) (1 + |bar-ell|)), eps the machine epsilon of theta's
    dtype. That second term is the gradient at which rounding hides further progress from the
    loss: near a minimum the loss changes by (1/2) d^T H d, which is invisible below
    eps |bar-ell|, i.e. for gradients H d below sqrt(eps |bar-ell| |H|); for a sum of N terms of
    order one, |H| is of order |bar-ell|, so the floor is about sqrt(eps) |bar-ell|. A point
    above it is visibly not a minimum, and an error is raised. In float64 it is about
    1.5e-8 |bar-ell|. Below it, the line search stalls (its sufficient-decrease test compares
    rounded losses), and up to 20 unit-step L-BFGS iterations, which use gradients only, take
    the gradient to ``tol`` (1e-10 is reached on the tests' problems); the point with the
    smallest gradient seen is returned.

    Args:
        bm: the model, its likelihood and its prior.
        X: inputs, shape (N, ...).
        y: targets, shape (N,) (see :class:`blrlib.infer.BayesModel` for their encoding).
        theta0: the starting point, shape (P,); the module's current parameters by default.
            For a freshly built module those are its random initial weights, drawn from
            torch's global generator: where the loss has several minima (a network) the
            result then depends on the global seed. Call ``torch.manual_seed`` before building
            the module, or pass ``theta0``, for a reproducible answer; where bar-ell is
            strictly convex (a linear model with a Gaussian prior) every start gives the same
            minimum.
        max_iter: the most L-BFGS iterations with line search (and at most 1.25 max_iter loss
            evaluations, as in ``torch.optim.LBFGS``).
        tol: the target for max_p |gradient_p| (L-BFGS's ``tolerance_grad``).

    Returns:
        theta*, a detached tensor of shape (P,). The module ``bm.model`` is left unchanged
        (call ``bm.load(theta_map)`` to write it in).

    Raises:
        TypeError: ``theta0`` is not a tensor, or ``max_iter`` / ``tol`` have the wrong type.
        ValueError: ``theta0`` has the wrong shape or non-finite values, ``max_iter`` or
            ``tol`` is not positive, or the loss is not finite.
        RuntimeError: L-BFGS stopped with a gradient above the threshold (not converged: raise
            ``max_iter``, or start closer to the minimum).
    """
    if isinstance(max_iter, bool) or not isinstance(max_iter, int):
        raise TypeError(f"max_iter must be a positive int; got {type(max_iter).__name__}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be a positive int; got {max_iter}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)):
        raise TypeError(f"tol must be a positive float; got {type(tol).__name__}")
    if not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be positive and finite; got {tol!r}")
    theta = _check_theta0(bm, theta0).requires_grad_(True)
    with torch.no_grad():  # shapes, dtypes and labels of X and y, before L-BFGS is built
        bm.nll(theta, X, y)
    eps = torch.finfo(theta.dtype).eps
    opt = torch.optim.LBFGS(
        [theta],
        lr=1.0,
        max_iter=max_iter,
        max_eval=max_iter * 5 // 4 + 1,
        tolerance_grad=tol,
        tolerance_change=0.0,  # stop on the gradient, not on a loss that stalls at rounding
        history_size=20,
        line_search_fn="strong_wolfe",
    )
    best = {"grad": math.inf, "theta": theta.detach().clone(), "loss": math.nan}

    def closure() -> Tensor:
        opt.zero_grad()
        loss = bm.loss(theta, X, y)
        if not torch.isfinite(loss):
            raise ValueError(f"loss: bm.loss is not finite ({loss.item()}) during fit_map")
        loss.backward()
        grad_max = theta.grad.abs().max().item()
        if grad_max < best["grad"]:  # keep the evaluated point with the smallest gradient
            best.update(grad=grad_max, theta=theta.detach().clone(), loss=loss.item())
        return loss

    opt.step(closure)
    threshold = max(tol, math.sqrt(eps) * (1.0 + abs(best["loss"])))
    if not best["grad"] <= threshold:
        raise RuntimeError(
            f"fit_map did not converge: max |gradient| = {best['grad']:.3g} > {threshold:.3g} "
            f"after max_iter={max_iter} L-BFGS iterations; raise max_iter or improve theta0"
        )
    if best["grad"] > tol:
        # The strong-Wolfe search asks for a decrease of the loss, which rounding hides once
        # the gradient is ~sqrt(eps) |bar-ell| (1e-7 on 50-point problems): it then returns a
        # zero step. The gradient is still accurate, and at that distance the loss is quadratic,
        # so unit quasi-Newton steps from the same L-BFGS memory, which use no loss values,
        # finish the job (to ~1e-13). The closure keeps the best point in case they do not.
        opt.param_groups[0].update(line_search_fn=None, max_iter=_POLISH_ITER)
        opt.step(closure)
    return best["theta"]
