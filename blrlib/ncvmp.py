"""Non-conjugate message passing: the BLR node by node on a mean-field family (Sec 5.4, Eq 58).

    from blrlib import ncvmp
    model = ncvmp.ARDLogistic(X, y, a0=1.0, b0=1.0)   # w ~ N(0, diag(alpha)^-1), alpha_j ~ Gamma
    out = ncvmp.run(model, model.init(), rho=1.0, n_iter=100, tol=1e-12)
    out["elbo"][-1], out["converged"], out["lam"][-1]   # one entry per sweep over the nodes

The candidate is a product q(x) = prod_j q_j(x_j) of minimal exponential families with constant
base measures (the "nodes"). The BLR step on node j, the others held fixed, is Eq 58 with the
expected log joint restricted to the factors that touch x_j,

    lam_j <- (1 - rho) lam_j + rho grad_{mu_j} E_q[log p(x)],

whose natural gradient the engine takes by autograd (``blr.step`` with the exact estimator):
a model only writes E_q[log p(x)] as a function of every node's mu. On a conjugate node, where
E_q[log p] is affine in mu_j, the step with rho = 1 is the variational message passing update
(Winn and Bishop, 2005); on a non-conjugate node it is non-conjugate VMP (Knowles and Minka,
2011) in the natural-gradient form of Khan and Lin (2017). A sweep updates every node once.

Derived in :ref:`vi-ncvmp`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from blrlib import blr
from blrlib._checks import count, positive_float
from blrlib.families import ExponentialFamily, Gamma, Gaussian, Params
from blrlib.ncvi import LogisticFactors, minimise

__all__ = ["ARDLogistic", "MeanFieldModel", "elbo", "mean_field_optimum", "node_step", "run"]

State = list[Params]
"""The natural parameters of every node, in the order of ``model.families``."""


class MeanFieldModel(Protocol):
    """A model p(x) with a mean-field candidate: the nodes' families and E_q[log p(x)]."""

    families: Sequence[ExponentialFamily]

    def expected_log_joint(self, mus: Sequence[Params]) -> Tensor: ...  # a scalar

    def to_unconstrained(self, lams: State) -> Tensor: ...  # a flat vector

    def from_unconstrained(self, x: Tensor) -> State: ...


def _check_state(model: MeanFieldModel, lams: object) -> State:
    if not isinstance(lams, (list, tuple)) or len(lams) != len(model.families):
        raise TypeError(f"lams must be a list of {len(model.families)} natural parameters")
    for j, (family, lam) in enumerate(zip(model.families, lams, strict=True)):
        family.check_natural(lam, f"lams[{j}]")
    return list(lams)


def _mus(model: MeanFieldModel, lams: State) -> list[Params]:
    return [f.to_expectation(lam) for f, lam in zip(model.families, lams, strict=True)]


def node_step(model: MeanFieldModel, lams: State, j: int, *, rho: float) -> State:
    """One BLR step on node j (Eq 58 for q_j), the other nodes held fixed; returns all nodes."""
    mus = [tuple(p.detach() for p in mu) for mu in _mus(model, lams)]

    def expected_loss(mu_j: Params) -> Tensor:
        return -model.expected_log_joint([*mus[:j], mu_j, *mus[j + 1 :]])

    new = blr.step(
        model.families[j], lams[j], rho=rho, estimator="exact", expected_loss=expected_loss
    )
    return [*lams[:j], new, *lams[j + 1 :]]


def elbo(model: MeanFieldModel, lams: State) -> Tensor:
    """E_q[log p(x)] + sum_j H(q_j): the negative Bayes objective of Eq 2 (constants kept)."""
    lams = _check_state(model, lams)
    entropy = sum(f.entropy(lam) for f, lam in zip(model.families, lams, strict=True))
    return model.expected_log_joint(_mus(model, lams)) + entropy


def run(
    model: MeanFieldModel,
    lams0: State,
    *,
    rho: float = 1.0,
    n_iter: int,
    tol: float | None = None,
) -> dict:
    """Sweeps of :func:`node_step` over every node in order, up to ``n_iter`` sweeps.

    Args:
        model: the model and its mean-field families.
        lams0: the initial natural parameters of every node.
        rho: the learning rate of every node step, in (0, 1].
        n_iter: the largest number of sweeps.
        tol: stop once a sweep moved no natural parameter by more than ``tol`` (None: run
            all sweeps). The ELBO is flat at its maximum, so its change is a weaker test.

    Returns:
        ``{"lam": [state after each sweep, lams0 first], "elbo": [...], "converged": bool,
        "n_iter": sweeps run}``.

    Raises:
        TypeError, ValueError: a bad state, ``rho``, ``n_iter`` or ``tol``.
    """
    lams = _check_state(model, lams0)
    count(n_iter, "n_iter", minimum=0)
    tol = None if tol is None else positive_float(tol, "tol")
    out: dict = {"lam": [lams], "elbo": [elbo(model, lams).item()], "converged": False}
    for _ in range(n_iter):
        old = lams
        for j in range(len(model.families)):
            lams = node_step(model, lams, j, rho=rho)
        out["lam"].append(lams)
        out["elbo"].append(elbo(model, lams).item())
        moved = max(
            (a - b).abs().max().item()
            for x, y in zip(lams, old, strict=True)
            for a, b in zip(x, y, strict=True)
        )
        if tol is not None and moved <= tol:
            out["converged"] = True
            break
    out["n_iter"] = len(out["lam"]) - 1
    return out


def mean_field_optimum(
    model: MeanFieldModel,
    lams0: State,
    *,
    max_iter: int = 500,
    tol: float = 1e-9,
    switch: float = 1e-4,
    newton_steps: int = 10,
) -> State:
    """The maximiser of :func:`elbo` over the model's unconstrained coordinates.

    A baseline that shares nothing with the node steps but the ELBO: L-BFGS from ``lams0`` to
    a gradient of ``switch``, then Newton steps with the autograd Hessian until the gradient's
    largest entry is at most ``tol``.

    Raises:
        RuntimeError: the gradient is still above ``tol`` after ``newton_steps`` steps.
    """
    tol = positive_float(tol, "tol")

    def neg_elbo(x: Tensor) -> Tensor:
        return -elbo(model, model.from_unconstrained(x))

    x0 = model.to_unconstrained(_check_state(model, lams0))
    x = minimise(
        neg_elbo,
        x0,
        tol=tol,
        lbfgs_tol=positive_float(switch, "switch"),
        max_iter=max_iter,
        newton_steps=newton_steps,
    )
    return model.from_unconstrained(x)


class ARDLogistic:
    """Logistic regression with one prior precision per weight (automatic relevance determination).

    p(y_i | w) = sigmoid(x_i^T w)^y_i (1 - sigmoid(x_i^T w))^(1 - y_i),
    w_j | alpha_j ~ N(0, 1 / alpha_j), alpha_j ~ Gamma(a0, b0) (shape, rate), and the mean-field
    candidate q(w) prod_j q(alpha_j): a full Gaussian node (non-conjugate: the logistic factors)
    and P Gamma nodes (conjugate: each step is a0 + 1/2, b0 + E[w_j^2] / 2 in closed form).

    Args:
        X: inputs (N, P); y: labels (N,) in {0, 1}.
        a0, b0: the Gamma hyperprior's shape and rate (> 0).
        n_points: quadrature nodes of :class:`~blrlib.ncvi.LogisticFactors`.

    Raises:
        ValueError: bad data (as ``LogisticFactors``), non-positive ``a0`` or ``b0``.
    """

    def __init__(
        self, X: Tensor, y: Tensor, *, a0: float = 1.0, b0: float = 1.0, n_points: int = 64
    ) -> None:
        self.factors = LogisticFactors(X, y, n_points=n_points)
        self.a0, self.b0 = positive_float(a0, "a0"), positive_float(b0, "b0")
        self.dim = X.shape[1]
        kw = {"dtype": X.dtype, "device": X.device}
        self.families: list[ExponentialFamily] = [Gaussian(self.dim, **kw)]
        self.families += [Gamma(1, **kw) for _ in range(self.dim)]

    def init(self) -> State:
        """q(w) = N(0, I) and every q(alpha_j) the hyperprior Gamma(a0, b0)."""
        q, kw = self.families[0], {"dtype": self.factors.X.dtype}
        lam_w = q.natural_from_mean_precision(
            torch.zeros(self.dim, **kw), torch.eye(self.dim, **kw)
        )
        lam_a = self.families[1].natural_from_shape_rate(self.a0, self.b0)
        return [lam_w, *[lam_a] * self.dim]

    def expected_log_joint(self, mus: Sequence[Params]) -> Tensor:
        """E_q[log p(y | w)] + sum_j E_q[log N(w_j | 0, 1 / alpha_j) + log Gamma(alpha_j)]."""
        mu_w, mu_a = mus[0], mus[1:]
        lik = self.factors(mu_w).sum()
        e_log_a = torch.cat([mu[0] for mu in mu_a])
        e_a = torch.cat([mu[1] for mu in mu_a])
        e_w2 = torch.diagonal(mu_w[1])
        prior_w = 0.5 * e_log_a - 0.5 * e_a * e_w2 - 0.5 * math.log(2 * math.pi)
        hyper = (self.a0 - 1.0) * e_log_a - self.b0 * e_a
        hyper = hyper + self.a0 * math.log(self.b0) - math.lgamma(self.a0)
        return lik + prior_w.sum() + hyper.sum()

    def to_unconstrained(self, lams: State) -> Tensor:
        """x = (m, the lower triangle of chol(S^-1), log a_j, log b_j)."""
        m, cov = self.families[0].mean_cov(lams[0])
        rows, cols = torch.tril_indices(self.dim, self.dim)
        shape_rate = [self.families[1].shape_rate(lam) for lam in lams[1:]]
        logs = torch.cat([torch.cat((a, b)).log() for a, b in shape_rate])
        return torch.cat((m, torch.linalg.cholesky(cov)[rows, cols], logs))

    def from_unconstrained(self, x: Tensor) -> State:
        """The inverse of :meth:`to_unconstrained` (differentiable)."""
        p = self.dim
        rows, cols = torch.tril_indices(p, p)
        n_tril = rows.numel()
        lower = torch.zeros(p, p, dtype=x.dtype).index_put((rows, cols), x[p : p + n_tril])
        cov = lower @ lower.T
        lam_w = self.families[0].to_natural((x[:p], cov + torch.outer(x[:p], x[:p])))
        ab = x[p + n_tril :].exp().reshape(p, 2)
        return [lam_w, *[(ab[j, :1] - 1.0, -ab[j, 1:]) for j in range(p)]]

    def precisions(self, lams: State) -> Tensor:
        """E_q[alpha_j] for every weight, shape (P,)."""
        return torch.cat([self.families[1].mean_var(lam)[0] for lam in lams[1:]])
