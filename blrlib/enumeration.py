"""Ground truth for binary weights by enumeration of all 2^P sign vectors (P <= 20, Sec 4.5).

    from blrlib import enumeration
    thetas = enumeration.sign_vectors(10)                 # (1024, 10), entries -1 or +1
    losses = enumeration.loss_table(loss, thetas)         # bar-ell(theta) for each
    post = enumeration.posterior(losses)                  # exp(-bar-ell) / Z (uniform prior)
    enumeration.marginals(thetas, post)                   # p(theta_j = +1 | data)

With every theta in {-1, +1}^P evaluated, the discrete optimum of Eq 47, the exact posterior
(the minimiser of the Bayes objective of Eq 2 over all distributions) and the Bayes objective of
any mean-field Bernoulli q (its expectation computed exactly) are known, which is what the
binary-network chapter compares STE and BayesBiNN against.

Used in :doc:`/book/binary` (ground truth by enumeration), whose :ref:`binary-ste` and
:ref:`binary-bayesbinn` it checks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from blrlib._checks import count

__all__ = [
    "bayes_objective",
    "entropy",
    "expected_loss",
    "loss_table",
    "marginals",
    "posterior",
    "sign_vectors",
]

MAX_DIM = 20


def sign_vectors(dim: int, *, dtype: torch.dtype | None = None, device=None) -> Tensor:
    """All 2^dim vectors of {-1, +1}^dim, shape (2^dim, dim), in binary-counting order.

    Raises:
        TypeError, ValueError: ``dim`` not an int in [1, 20] (2^20 rows is the limit).
    """
    count(dim, "dim")
    if dim > MAX_DIM:
        raise ValueError(f"dim must be <= {MAX_DIM} for enumeration; got {dim}")
    codes = torch.arange(2**dim, device=device).unsqueeze(-1)
    bits = (codes >> torch.arange(dim - 1, -1, -1, device=device)) & 1
    return (2 * bits - 1).to(dtype or torch.get_default_dtype())


def loss_table(loss: Callable[[Tensor], Tensor], thetas: Tensor, *, chunk: int = 4096) -> Tensor:
    """bar-ell(theta) for every row of ``thetas``, with ``loss`` vmapped over chunks of rows."""
    count(chunk, "chunk")
    return torch.cat([torch.vmap(loss)(part) for part in thetas.split(chunk)])


def posterior(losses: Tensor, log_prior: Tensor | None = None) -> Tensor:
    """p(theta | data) = exp(-bar-ell(theta) + log p(theta)) / Z over the enumerated thetas."""
    logits = -losses if log_prior is None else log_prior - losses
    return torch.softmax(logits, dim=0)


def marginals(thetas: Tensor, probs: Tensor) -> Tensor:
    """p(theta_j = +1) = sum_theta probs(theta) [theta_j = 1], shape (P,)."""
    return probs @ (thetas > 0).to(probs.dtype)


def expected_loss(mu: Tensor, thetas: Tensor, losses: Tensor) -> Tensor:
    """E_q[bar-ell] = sum_theta bar-ell(theta) prod_j (1 + mu_j theta_j) / 2, exact in mu.

    Differentiable in ``mu``: its gradient is the exact natural gradient grad_mu E_q[bar-ell]
    (Eq 4), for ``blr.step(..., estimator="exact", expected_loss=...)``.

    Args:
        mu: the means tanh(lam), shape (P,) or (S, P) for S problems at once.
        thetas: (K, P) sign vectors. losses: (K,) or (S, K), the loss of each.

    Returns:
        A scalar for (P,) and (K,); shape (S,) otherwise, one value per problem.
    """
    log_q = torch.log((1 + mu.unsqueeze(-2) * thetas) / 2).sum(-1)
    return (log_q.exp() * losses).sum(-1)


def entropy(lam: Tensor) -> Tensor:
    """H(q) = sum_j log(2 cosh lam_j) - lam_j tanh(lam_j) of q = SignBernoulli(lam) (P,) or
    (S, P) -> () or (S,): ``SignBernoulli.entropy`` for one or several problems at once."""
    return (torch.logaddexp(lam, -lam) - lam * torch.tanh(lam)).sum(-1)


def bayes_objective(lam: Tensor, thetas: Tensor, losses: Tensor) -> Tensor:
    """E_q[bar-ell] - H(q) for q = SignBernoulli(lam), exactly (Eq 2 with a uniform prior).

    Its minimum over all distributions is -log Z = -logsumexp(-bar-ell), at the posterior.
    ``lam`` (P,) or (S, P) with ``losses`` (K,) or (S, K), as :func:`expected_loss`.
    """
    return expected_loss(torch.tanh(lam), thetas, losses) - entropy(lam)
