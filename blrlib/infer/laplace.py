"""The Laplace approximation N(theta*, H^-1): a Gaussian at the MAP with the loss's curvature.

    from blrlib.infer import BayesModel, fit_map, laplace
    bm = BayesModel(net, "bernoulli", prior_precision=1.0)
    theta_map = fit_map(bm, X, y)
    q = laplace(bm, X, y, theta_map, curvature="ggn")   # a GaussianPosterior
    q.mean, q.cov                                        # theta*, and H^-1 (P, P)

The log posterior is expanded to second order around its mode theta* (MacKay, 1992):
-log p(theta | D) ~ const + (1/2) (theta - theta*)^T H (theta - theta*), H the Hessian of the
total loss bar-ell (Eq 1 of Khan & Rue, 2023) at theta*.
It is also the fixed point of the Bayesian learning rule's Newton step (Sec 1.3.2, Eq 12 with
rho = 1 and the delta method): at a minimum the gradient vanishes and the precision is H.
``curvature="ggn"`` replaces H by the generalised Gauss-Newton matrix, which is positive definite
everywhere and equals H for a model linear in theta with a canonical link;
``structure="diag"`` keeps only the diagonal of the precision.
:func:`log_evidence` gives the Laplace estimate of log p(y | X) (MacKay, 1992), for choosing the
prior precision or comparing models.

Derived in :ref:`primer-laplace`.
"""

from __future__ import annotations

import math
from enum import Enum

import torch
from torch import Tensor
from torch.func import hessian, jacrev

from blrlib.estimators import parse_option
from blrlib.infer.gaussian import GaussianPosterior
from blrlib.infer.model import BayesModel, Likelihood

__all__ = ["Curvature", "Structure", "laplace", "log_evidence", "output_hessian"]


class Structure(str, Enum):
    """Which entries of the precision the approximation keeps."""

    FULL = "full"  # the (P, P) precision
    DIAG = "diag"  # its diagonal (P,): a mean-field Gaussian


class Curvature(str, Enum):
    """Which second-order matrix of bar-ell is the precision."""

    HESSIAN = "hessian"  # the exact Hessian of bm.loss (autograd)
    GGN = "ggn"  # the generalised Gauss-Newton matrix sum_i J_i^T Lambda_i J_i + delta I


def output_hessian(bm: BayesModel, f: Tensor) -> Tensor:
    """Lambda_i = d^2 nll_i / d f_i^2, the Hessian of the negative log-likelihood in the outputs.

    For the canonical links it does not depend on y: p (1 - p) for ``bernoulli`` (p = sigmoid(f)),
    diag(p) - p p^T for ``categorical`` (p = softmax(f)), and tau for ``gaussian``.

    Args:
        bm: the model (only its likelihood and noise precision are used).
        f: outputs, shape (N,) (bernoulli, gaussian) or (N, K) (categorical).

    Returns:
        Shape (N,) for one output per example, (N, K, K) for categorical.
    """
    if bm.likelihood is Likelihood.BERNOULLI:
        p = torch.sigmoid(f)
        return p * (1 - p)
    if bm.likelihood is Likelihood.CATEGORICAL:
        p = torch.softmax(f, dim=-1)
        return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
    return torch.full_like(f, bm.noise_precision)


def _ggn(bm: BayesModel, X: Tensor, theta: Tensor, diag: bool) -> Tensor:
    """sum_i J_i^T Lambda_i J_i + delta I, or its diagonal, without a (P, P) matrix when diag."""
    J = jacrev(lambda t: bm.forward(t, X))(theta)  # (N, P) or (N, K, P)
    lam = output_hessian(bm, bm.forward(theta, X).detach())
    if lam.dim() == 1:  # one output per example
        if J.dim() != 2:
            raise ValueError(f"X: expected one output per example; got outputs {J.shape[:-1]}")
        prior = torch.full_like(theta, bm.prior_precision)
        if diag:
            return torch.einsum("np,n,np->p", J, lam, J) + prior
        return torch.einsum("np,n,nq->pq", J, lam, J) + torch.diag(prior)
    if diag:
        return torch.einsum("nkp,nkl,nlp->p", J, lam, J) + bm.prior_precision
    ggn = torch.einsum("nkp,nkl,nlq->pq", J, lam, J)
    return ggn + bm.prior_precision * torch.eye(theta.numel(), dtype=ggn.dtype, device=ggn.device)


def laplace(
    bm: BayesModel,
    X: Tensor,
    y: Tensor,
    theta_map: Tensor,
    *,
    structure: Structure | str = Structure.FULL,
    curvature: Curvature | str = Curvature.HESSIAN,
) -> GaussianPosterior:
    """The Laplace approximation q(theta) = N(theta*, S^-1) at a minimum theta* of bar-ell.

    Implements the Laplace approximation that the BLR's Newton step (Khan & Rue 2023, Eq 12 with
    rho = 1, delta method) leaves unchanged: S = grad^2 bar-ell(theta*) (``"hessian"``), or the
    generalised Gauss-Newton matrix (``"ggn"``)

        S = sum_i J_i^T Lambda_i J_i + delta I,
        J_i = d f_i / d theta,  Lambda_i = d^2 nll_i / d f_i^2,

    which drops the term sum_i (d nll_i / d f_i) d^2 f_i / d theta^2 of the Hessian, so that it is
    positive definite for any theta and equals the Hessian when f is linear in theta (the
    likelihoods here all use their canonical link). With ``structure="diag"`` only diag(S) is
    kept (the GGN diagonal is computed without forming S).

    Args:
        bm: the model, likelihood and prior.
        X: inputs, shape (N, ...).
        y: targets, shape (N,). The GGN does not depend on them (canonical links).
        theta_map: the MAP, shape (P,) (from :func:`blrlib.infer.fit_map`).
        structure: ``"full"`` or ``"diag"``.
        curvature: ``"hessian"`` or ``"ggn"``.

    Returns:
        A :class:`GaussianPosterior` with mean theta_map and precision S, (P, P) or (P,).

    Raises:
        TypeError: ``theta_map`` is not a tensor.
        ValueError: ``theta_map`` has the wrong shape or non-finite values, the precision is not
            positive definite (``theta_map`` is not a minimum), or an unknown option.
    """
    structure = parse_option(structure, Structure, "structure")
    curvature = parse_option(curvature, Curvature, "curvature")
    if not isinstance(theta_map, Tensor):
        raise TypeError(f"theta_map must be a tensor; got {type(theta_map).__name__}")
    if theta_map.shape != (bm.dim,):
        raise ValueError(f"theta_map must have shape ({bm.dim},); got {tuple(theta_map.shape)}")
    if not torch.is_floating_point(theta_map) or not torch.isfinite(theta_map).all():
        raise ValueError("theta_map must be a finite floating-point tensor")
    theta = theta_map.detach()
    diag = structure is Structure.DIAG
    if curvature is Curvature.GGN:
        precision = _ggn(bm, X, theta, diag)
    else:
        # the exact diagonal costs P Hessian-vector products, as the full Hessian does
        full = hessian(lambda t: bm.loss(t, X, y))(theta)
        precision = torch.diagonal(full) if diag else 0.5 * (full + full.mT)
    if diag:
        positive = bool((precision > 0).all())
    else:
        positive = int(torch.linalg.cholesky_ex(precision).info) == 0
    if not positive:
        raise ValueError(
            f"theta_map: the {curvature.value} precision there is not positive definite, so "
            "theta_map is not a minimum of bm.loss (find it with fit_map, or use curvature='ggn')"
        )
    return GaussianPosterior.from_mean_precision(theta, precision.detach())


def log_evidence(bm: BayesModel, X: Tensor, y: Tensor, q: GaussianPosterior) -> Tensor:
    """The Laplace estimate of the log marginal likelihood log p(y | X) (MacKay, 1992).

    Integrating the second-order expansion of the log joint around theta* gives

        log p(y | X) ~ log p(y, theta* | X) + (P / 2) log(2 pi) - (1 / 2) log |S|,

    with ``bm.log_joint`` (the prior's normaliser included) and S the precision of ``q``. It is
    exact for a Gaussian likelihood with a model linear in theta and ``curvature="hessian"``.

    Args:
        bm: the model, likelihood and prior.
        X, y: the data, as in :func:`laplace`.
        q: the output of :func:`laplace` (its mean must be the MAP).

    Returns:
        A scalar tensor, in nats.

    Raises:
        TypeError: ``q`` is not a :class:`GaussianPosterior`.
        ValueError: ``q`` has another dimension than ``bm``.
    """
    if not isinstance(q, GaussianPosterior):
        raise TypeError(f"q must be a GaussianPosterior (from laplace); got {type(q).__name__}")
    if q.mean.shape != (bm.dim,):
        raise ValueError(f"q must be over ({bm.dim},) parameters; got {tuple(q.mean.shape)}")
    cov = q.cov
    logdet_cov = cov.log().sum() if q.diagonal else torch.linalg.slogdet(cov)[1]
    theta = q.mean.detach()
    with torch.no_grad():
        joint = bm.log_joint(theta, X, y)
    return joint + 0.5 * bm.dim * math.log(2 * math.pi) + 0.5 * logdet_cov
