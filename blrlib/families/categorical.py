"""Independent categorical variables: the E-step family of EM (Sec 5.2, Eq 55).

    import torch
    from blrlib.families import Categorical
    q = Categorical(5, n_classes=3, dtype=torch.float64)   # five variables z_i in {0, 1, 2}
    lam = q.natural_from_probs(torch.full((5, 3), 1 / 3))  # (5, 2): log(p_k / p_K)
    probs = q.probs(lam)                                   # (5, 3)

Minimal parametrisation (K - 1 free coordinates per variable, so the Fisher matrix is
invertible): T(z) = one-hot(z) without its last entry, lam_k = log(p_k / p_K),
A(lam) = sum_i log(1 + sum_k exp(lam_ik)), mu = (p_1, ..., p_{K-1}) and h(z) = 1.
The base measure is constant, so grad_mu(-H(q)) = lam (App B), and a BLR step with rho = 1
sets lam to -grad_mu E_q[loss]: the E-step of EM (Sec 5.2).

Derived in :ref:`conj-em` (the E-step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from blrlib.families._base import ExponentialFamily, Order, Params


class Categorical(ExponentialFamily):
    """``dim`` = N independent categorical variables, each on {0, ..., K - 1}.

    Args:
        dim: the number N of variables.
        n_classes: the number K >= 2 of categories.
        dtype: floating-point dtype of the parameters (draws are class indices in that dtype).
        device: device of draws.

    Raises:
        TypeError, ValueError: ``n_classes`` is not an int >= 2.
    """

    order = Order.FIRST

    def __init__(
        self,
        dim: int,
        *,
        n_classes: int,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(dim, dtype=dtype, device=device)
        if isinstance(n_classes, bool) or not isinstance(n_classes, int):
            raise TypeError(f"n_classes must be an int >= 2, got {type(n_classes).__name__}")
        if n_classes < 2:
            raise ValueError(f"n_classes must be an int >= 2, got {n_classes}")
        self.n_classes = n_classes

    def __repr__(self) -> str:
        return f"Categorical(dim={self.dim}, n_classes={self.n_classes}, dtype={self.dtype})"

    def natural_shapes(self) -> tuple[tuple[int, ...], ...]:
        """((N, K - 1),)."""
        return ((self.dim, self.n_classes - 1),)

    def _full_logits(self, lam: Params) -> Tensor:
        return F.pad(lam[0], (0, 1))  # the last class has logit 0

    def probs(self, lam: Params) -> Tensor:
        """All K probabilities of each variable, shape (N, K)."""
        return torch.softmax(self._full_logits(lam), dim=-1)

    def natural_from_probs(self, probs: Tensor) -> Params:
        """lam = (log p_k - log p_K,) from probabilities (N, K) that are positive and sum to one.

        Raises:
            ValueError: wrong shape, non-positive entries or rows that do not sum to one.
        """
        probs = torch.as_tensor(probs, dtype=self.dtype, device=self.device)
        if tuple(probs.shape) != (self.dim, self.n_classes):
            raise ValueError(
                f"probs must have shape ({self.dim}, {self.n_classes}), got {tuple(probs.shape)}"
            )
        if not (torch.isfinite(probs).all() and (probs > 0).all()):
            raise ValueError("probs must be finite and positive")
        if not torch.allclose(probs.sum(-1), torch.ones_like(probs[:, 0])):
            raise ValueError("probs: each row must sum to one")
        return (probs[:, :-1].log() - probs[:, -1:].log(),)

    def log_partition(self, lam: Params) -> Tensor:
        """A(lam) = sum_i logsumexp(lam_i1, ..., lam_i(K-1), 0)."""
        return torch.logsumexp(self._full_logits(lam), dim=-1).sum()

    def to_expectation(self, lam: Params) -> Params:
        """mu = (p_1, ..., p_{K-1}) for each variable, shape (N, K - 1)."""
        return (self.probs(lam)[:, :-1],)

    def to_natural(self, mu: Params) -> Params:
        """lam = log p_k - log p_K with p_K = 1 - sum_k mu_k."""
        last = 1.0 - mu[0].sum(-1, keepdim=True)
        return (mu[0].log() - last.log(),)

    def sufficient_statistics(self, theta: Tensor) -> Params:
        """T(z) = one-hot(z)[..., :K-1], shape (..., N, K - 1), for class indices z (..., N)."""
        onehot = F.one_hot(theta.long(), self.n_classes).to(self.dtype)
        return (onehot[..., :-1],)

    def log_base_measure(self, theta: Tensor) -> Tensor:
        """log h(z) = 0; shape (...)."""
        return theta.new_zeros(theta.shape[:-1], dtype=self.dtype)

    def log_prob(self, lam: Params, theta: Tensor) -> Tensor:
        """log q(z) = sum_i log p_{i, z_i}; z (..., N) -> (...)."""
        self._check_theta(theta)
        logp = torch.log_softmax(self._full_logits(lam), dim=-1)
        return logp.expand(*theta.shape, -1).gather(-1, theta.long().unsqueeze(-1))[..., 0].sum(-1)

    def rsample(self, lam: Params, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Not available: categorical draws are discrete and cannot be reparameterised.

        Raises:
            NotImplementedError: always; use :meth:`sample`.
        """
        raise NotImplementedError(
            "Categorical draws are not reparameterisable; use Categorical.sample"
        )

    def sample(self, lam: Params, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n draws of the N class indices, shape (n, N), in the family's dtype."""
        self._check_n(n)
        probs = self.probs(tuple(p.detach() for p in lam))
        draws = torch.multinomial(probs, n, replacement=True, generator=generator)
        return draws.T.to(self.dtype)

    def neg_entropy_natural_gradient(self, lam: Params) -> Params:
        """grad_mu E_q[log q] = lam, since h is constant (App B, Eq 64)."""
        return tuple(lam)

    def _check_expectation_values(self, mu: Params, name: str) -> None:
        if not ((mu[0] > 0).all() and (mu[0].sum(-1) < 1).all()):
            raise ValueError(f"{name}: probabilities must be positive with p_K = 1 - sum > 0")
