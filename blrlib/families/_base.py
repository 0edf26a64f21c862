"""The exponential-family interface shared by every candidate family of the BLR.

    import torch
    from blrlib.families import Gaussian
    q = Gaussian(2, dtype=torch.float64)
    lam = q.natural_from_mean_precision(torch.zeros(2), torch.eye(2))
    mu = q.to_expectation(lam)  # = grad A(lam), Eq 9

A candidate is q(theta) = h(theta) exp(<lam, T(theta)> - A(lam)) (Sec 1.2 of Khan & Rue, 2023).
Natural parameters ``lam`` and expectation parameters ``mu = E_q[T(theta)] = grad A(lam)`` are
plain tuples of tensors; a family object holds only structural constants (dimension, a fixed
precision, mixture weights, dtype and device), never ``lam``. Every method is a pure,
differentiable function of its arguments.
"""

from __future__ import annotations

import abc
import enum
import math

import torch
from torch import Tensor

Params = tuple[Tensor, ...]
"""Natural or expectation parameters: a tuple of tensors, one per sufficient statistic."""


class Order(str, enum.Enum):
    """Which derivatives of the loss the natural gradient of E_q[loss] needs (Sec 3.1).

    ``FIRST``: the gradient only (fixed-covariance Gaussian, Bernoulli); ``DIAG``: the gradient and
    the Hessian diagonal (diagonal Gaussian); ``FULL``: the gradient and the full Hessian.
    """

    FIRST = "first"
    DIAG = "diag"
    FULL = "full"


def inner(lam: Params, stats: Params) -> Tensor:
    """The inner product <lam, T>, batched over the leading dimensions of ``stats``.

    Each tuple entry contributes ``(a * b).sum()`` over the entry's own dimensions (for matrices,
    trace(A^T B)).

    Args:
        lam: parameters, entry i of shape ``s_i``.
        stats: statistics, entry i of shape ``(..., *s_i)``.

    Returns:
        Tensor of shape ``(...)``.
    """
    terms = [
        (a * b).flatten(start_dim=b.dim() - a.dim()).sum(-1)
        for a, b in zip(lam, stats, strict=True)
    ]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


class ExponentialFamily(abc.ABC):
    """Abstract candidate family Q of the Bayesian learning rule (Eq 2-6).

    Attributes:
        dim: the dimension P of theta.
        order: which loss derivatives the natural gradient needs (:class:`Order`).
        closed_form_entropy_gradient: whether :meth:`neg_entropy_natural_gradient` exists in
            closed form (False for mixtures, Eq 28).
        dtype, device: of the family's constants and random draws.
    """

    order: Order
    closed_form_entropy_gradient: bool = True

    def __init__(
        self,
        dim: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"dim must be a positive int, got {type(dim).__name__}")
        if dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim}")
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
        self.dim = dim
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, dtype={self.dtype})"

    # ----------------------------------------------------------------- structure
    @abc.abstractmethod
    def natural_shapes(self) -> tuple[tuple[int, ...], ...]:
        """The shapes of the entries of ``lam`` (and of ``mu``)."""

    @abc.abstractmethod
    def log_partition(self, lam: Params) -> Tensor:
        """The log-partition function A(lam), a scalar."""

    @abc.abstractmethod
    def to_expectation(self, lam: Params) -> Params:
        """mu = grad A(lam) = E_q[T(theta)], in closed form."""

    @abc.abstractmethod
    def to_natural(self, mu: Params) -> Params:
        """lam = grad A*(mu), the inverse of :meth:`to_expectation`."""

    @abc.abstractmethod
    def sufficient_statistics(self, theta: Tensor) -> Params:
        """T(theta) for theta of shape (..., P); entry i: ``(..., *natural_shapes()[i])``."""

    @abc.abstractmethod
    def log_base_measure(self, theta: Tensor) -> Tensor:
        """log h(theta) for theta of shape (..., P); returns shape (...)."""

    @abc.abstractmethod
    def rsample(self, lam: Params, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n reparameterised draws of shape (n, P), differentiable with respect to ``lam``."""

    @abc.abstractmethod
    def neg_entropy_natural_gradient(self, lam: Params) -> Params:
        """grad_mu E_q[log q] = lam + grad_mu E_q[log h(theta)] (App B, Eq 64)."""

    def _expected_log_base_measure(self, lam: Params) -> Tensor:
        """E_q[log h(theta)]; zero unless overridden."""
        return lam[0].new_zeros(())

    def _check_natural_values(self, lam: Params, name: str) -> None:
        """Family-specific validity checks of ``lam`` (shapes and finiteness already checked)."""
        del lam, name  # no constraint beyond shapes and finiteness unless overridden

    def _check_expectation_values(self, mu: Params, name: str) -> None:
        """Family-specific validity checks of ``mu`` (shapes and finiteness already checked)."""
        del mu, name  # no constraint beyond shapes and finiteness unless overridden

    # ----------------------------------------------------------------- generic
    def log_prob(self, lam: Params, theta: Tensor) -> Tensor:
        """log q(theta) = log h(theta) + <lam, T(theta)> - A(lam) (Sec 1.2).

        Args:
            lam: natural parameters.
            theta: points of shape (..., P).

        Returns:
            Tensor of shape (...).
        """
        self._check_theta(theta)
        stats = self.sufficient_statistics(theta)
        return self.log_base_measure(theta) + inner(lam, stats) - self.log_partition(lam)

    def entropy(self, lam: Params) -> Tensor:
        """H(q) = A(lam) - <lam, mu> - E_q[log h(theta)], a scalar (used in Eq 2 and 24)."""
        mu = self.to_expectation(lam)
        return self.log_partition(lam) - inner(lam, mu) - self._expected_log_base_measure(lam)

    def kl(self, lam_q: Params, lam_p: Params) -> Tensor:
        """KL(q || p) as the Bregman divergence D_A(lam_p || lam_q) (Eq 21), a scalar."""
        mu_q = self.to_expectation(lam_q)
        diff = tuple(p - q for p, q in zip(lam_p, lam_q, strict=True))
        return self.log_partition(lam_p) - self.log_partition(lam_q) - inner(diff, mu_q)

    def sample(self, lam: Params, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n draws of shape (n, P), detached from the graph."""
        with torch.no_grad():
            return self.rsample(tuple(p.detach() for p in lam), n, generator=generator)

    # ----------------------------------------------------------------- validation
    def check_natural(self, lam: Params, name: str = "lam") -> None:
        """Validate natural parameters.

        Raises:
            TypeError: ``lam`` is not a tuple of tensors of the right length and dtype.
            ValueError: wrong shapes, non-finite entries or values outside the natural domain
                (e.g. a precision that is not positive definite); the message names ``name``.
        """
        self._check_params(lam, name)
        self._check_natural_values(lam, name)

    def check_expectation(self, mu: Params, name: str = "mu") -> None:
        """Validate expectation parameters (same contract as :meth:`check_natural`)."""
        self._check_params(mu, name)
        self._check_expectation_values(mu, name)

    def _check_params(self, params: Params, name: str) -> None:
        shapes = self.natural_shapes()
        if not isinstance(params, tuple) or len(params) != len(shapes):
            raise TypeError(
                f"{name} must be a tuple of {len(shapes)} tensors with shapes {list(shapes)}, "
                f"got {type(params).__name__}"
                + (f" of length {len(params)}" if isinstance(params, tuple) else "")
            )
        for i, (p, shape) in enumerate(zip(params, shapes, strict=True)):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}[{i}] must be a torch.Tensor, got {type(p).__name__}")
            if p.dtype != self.dtype:
                raise TypeError(f"{name}[{i}] must have dtype {self.dtype}, got {p.dtype}")
            if tuple(p.shape) != shape:
                raise ValueError(f"{name}[{i}] must have shape {shape}, got {tuple(p.shape)}")
            if not torch.isfinite(p).all():
                raise ValueError(f"{name}[{i}] contains non-finite values (NaN or inf)")

    def _check_theta(self, theta: Tensor) -> None:
        if not isinstance(theta, Tensor):
            raise TypeError(f"theta must be a torch.Tensor, got {type(theta).__name__}")
        if theta.dim() < 1 or theta.shape[-1] != self.dim:
            raise ValueError(f"theta must have shape (..., {self.dim}), got {tuple(theta.shape)}")

    def _check_n(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")

    def _as_param(self, value: object, shape: tuple[int, ...]) -> Tensor:
        """``value`` as a tensor of the family's dtype and device.

        A Python number or a 0-dim tensor is reshaped to ``shape`` when ``shape`` holds one
        element, so that a one-dimensional family takes scalars (``Beta(1)
        .natural_from_shapes(2.0, 3.0)``). Shapes are checked by the caller.
        """
        out = torch.as_tensor(value, dtype=self.dtype, device=self.device)
        if out.dim() == 0 and math.prod(shape) == 1:
            out = out.reshape(shape)
        return out

    def _randn(self, n: int, generator: torch.Generator | None) -> Tensor:
        self._check_n(n)
        return torch.randn(n, self.dim, generator=generator, dtype=self.dtype, device=self.device)
