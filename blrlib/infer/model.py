"""A torch model with a likelihood and a Gaussian prior, as a function of one parameter vector.

    from blrlib.infer import BayesModel
    bm = BayesModel(torch.nn.Linear(2, 1), "bernoulli", prior_precision=1.0)
    theta = bm.theta0()            # the module's parameters as one vector, shape (P,)
    bm.loss(theta, X, y)           # bar-ell = sum_i -log p(y_i | x_i, theta) + delta |theta|^2 / 2
    bm.forward(theta, X)           # the network's outputs at theta (logits, or means)

Every inference method in ``blrlib.infer`` (MAP, Laplace, VI, MCMC) works on this flat vector,
so that a posterior over theta is an ordinary distribution over R^P, and ``sum_loss`` hands the
same loss to the Bayesian learning rule (``blrlib.blr``).
With ``parameters=[...]`` only the named parameters are random (e.g. the last layer) and the
others stay at their current values, which gives last-layer Laplace, VI or HMC.

Used by every method of :doc:`/book/primer`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum

import torch
from torch import Tensor, nn
from torch.func import functional_call

from blrlib import _checks
from blrlib.estimators import SumLoss, parse_option

__all__ = ["BayesModel", "Likelihood"]


class Likelihood(str, Enum):
    """The observation model p(y | f): outputs f are logits, or means for ``gaussian``."""

    BERNOULLI = "bernoulli"  # f: logits of shape (N,) or (N, 1); y in {0, 1}
    CATEGORICAL = "categorical"  # f: logits (N, K); y integer classes in [0, K)
    GAUSSIAN = "gaussian"  # f: means (N,) or (N, 1); noise precision tau


def _traced(y: Tensor) -> bool:
    """Whether ``y`` is a torch.func (vmap, grad) wrapper, whose values cannot be inspected."""
    return torch._C._functorch.is_functorch_wrapped_tensor(y)


class BayesModel:
    """p(theta | X, y) proportional to prod_i p(y_i | f_theta(x_i)) N(theta | 0, I / delta).

    Args:
        model: any ``nn.Module``; its forward maps inputs X (N, ...) to outputs f (N, ...).
        likelihood: ``"bernoulli"``, ``"categorical"`` or ``"gaussian"``.
        prior_precision: delta > 0 of the Gaussian prior on the random parameters.
        noise_precision: tau > 0 of the Gaussian likelihood (ignored for classification).
        parameters: names (as in ``model.named_parameters()``) of the random parameters; all of
            them by default. The rest keep their current values.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: unknown ``likelihood`` or parameter name, a model without parameters, or a
            non-positive precision.
    """

    def __init__(
        self,
        model: nn.Module,
        likelihood: Likelihood | str,
        *,
        prior_precision: float,
        noise_precision: float = 1.0,
        parameters: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        self.model = model
        self.likelihood = parse_option(likelihood, Likelihood, "likelihood")
        self.prior_precision = _checks.positive_float(prior_precision, "prior_precision")
        self.noise_precision = _checks.positive_float(noise_precision, "noise_precision")
        named = dict(model.named_parameters())
        if not named:
            raise ValueError("model: has no parameters to infer")
        names = list(named) if parameters is None else list(parameters)
        unknown = [n for n in names if n not in named]
        if unknown or not names:
            raise ValueError(f"parameters: unknown or empty {unknown or names}; have {list(named)}")
        self.names = names
        self.shapes = [named[n].shape for n in names]
        self.sizes = [named[n].numel() for n in names]

    @property
    def dim(self) -> int:
        """P, the number of random parameters."""
        return sum(self.sizes)

    def theta0(self) -> Tensor:
        """The module's current values of the random parameters, as one detached vector (P,)."""
        named = dict(self.model.named_parameters())
        return torch.cat([named[n].detach().reshape(-1) for n in self.names]).clone()

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """The vector theta (P,) as a dict of parameter tensors, the fixed ones included."""
        if theta.shape != (self.dim,):
            raise ValueError(f"theta must have shape ({self.dim},); got {tuple(theta.shape)}")
        params = {n: p.detach() for n, p in self.model.named_parameters()}
        for name, shape, chunk in zip(
            self.names, self.shapes, torch.split(theta, self.sizes), strict=True
        ):
            params[name] = chunk.reshape(shape)
        return params

    def load(self, theta: Tensor) -> None:
        """Write theta into the module's parameters (e.g. to predict with the MAP)."""
        with torch.no_grad():
            for name, value in self.unflatten(theta).items():
                self.model.get_parameter(name).copy_(value)

    def forward(self, theta: Tensor, X: Tensor) -> Tensor:
        """The model's outputs at theta: (N,) for one output per example, else (N, K).

        Raises:
            TypeError: ``X`` is not a tensor, or a floating-point ``X`` whose dtype differs
                from theta's (no silent float32/float64 mix).
            ValueError: ``X`` is empty (N = 0).
        """
        _checks.nonempty(_checks.tensor(X, "X"), "X")
        _checks.same_float_dtype(X, "X", theta.dtype, "theta (the model's parameters)")
        out = functional_call(self.model, self.unflatten(theta), (X,))
        if out.dim() == 2 and out.shape[1] == 1 and self.likelihood is not Likelihood.CATEGORICAL:
            out = out.squeeze(1)
        return out

    def check_targets(self, f: Tensor, y: object) -> Tensor:
        """``y`` in the layout the likelihood reads, checked against the outputs f.

        One number per example (Bernoulli, Gaussian with one output, the class of a categorical
        likelihood): y of shape (N,), and (N, 1) is read as (N,), never broadcast. Several
        outputs per example (Gaussian or Bernoulli with f of shape (N, D)): y of shape (N, D).
        Bernoulli labels must be 0 or 1 and categorical labels integers in [0, K).

        Raises:
            TypeError: ``y`` is not a tensor.
            ValueError: ``y`` of another shape, or labels outside the classes.
        """
        y = _checks.tensor(y, "y")
        n = f.shape[0]
        if f.dim() == 1 or self.likelihood is Likelihood.CATEGORICAL:
            y = _checks.scalar_targets(y, "y", n)
        elif y.shape != f.shape:
            raise ValueError(
                f"y must have shape {tuple(f.shape)}, like the model's outputs; "
                f"got {tuple(y.shape)}"
            )
        if self.likelihood is not Likelihood.GAUSSIAN and not _traced(y):
            k = 2 if self.likelihood is Likelihood.BERNOULLI else f.shape[-1]
            _checks.class_labels(y, "y", k)
        return y

    def nll_of_outputs(self, f: Tensor, y: Tensor) -> Tensor:
        """-log p(y_i | f_i) per example, shape (N,), including constants.

        ``y`` follows :meth:`check_targets`; a target of another shape raises ValueError.
        """
        y = self.check_targets(f, y)
        if self.likelihood is Likelihood.BERNOULLI:
            return nn.functional.binary_cross_entropy_with_logits(
                f, y.to(f.dtype), reduction="none"
            )
        if self.likelihood is Likelihood.CATEGORICAL:
            return nn.functional.cross_entropy(f, y.long(), reduction="none")
        tau = self.noise_precision
        return 0.5 * tau * (y.to(f.dtype) - f) ** 2 - 0.5 * math.log(tau / (2 * math.pi))

    def nll(self, theta: Tensor, X: Tensor, y: Tensor) -> Tensor:
        """-log p(y_i | x_i, theta) per example, shape (N,)."""
        return self.nll_of_outputs(self.forward(theta, X), y)

    def regulariser(self, theta: Tensor) -> Tensor:
        """R(theta) = delta |theta|^2 / 2, the negative log prior up to a constant."""
        return 0.5 * self.prior_precision * (theta * theta).sum()

    def loss(self, theta: Tensor, X: Tensor, y: Tensor) -> Tensor:
        """The total loss bar-ell(theta) = sum_i nll_i + R(theta) (Khan & Rue, Eq 1)."""
        return self.nll(theta, X, y).sum() + self.regulariser(theta)

    def log_joint(self, theta: Tensor, X: Tensor, y: Tensor) -> Tensor:
        """log p(y, theta | X) = -bar-ell(theta) - log of the prior's normaliser."""
        log_norm = 0.5 * self.dim * math.log(self.prior_precision / (2 * math.pi))
        return -self.loss(theta, X, y) + log_norm

    def sum_loss(self, X: Tensor, y: Tensor) -> SumLoss:
        """The same loss as a :class:`blrlib.estimators.SumLoss`, for ``blrlib.blr``."""
        return SumLoss(lambda theta: self.nll(theta, X, y), self.regulariser)
