"""Gaussian approximations N(m, S^-1) of a posterior over theta, as blrlib families.

    from blrlib.infer import GaussianPosterior
    q = GaussianPosterior.from_mean_precision(torch.zeros(3), torch.eye(3))  # full covariance
    q.sample(100)        # (100, 3)
    q.mean, q.cov        # (3,), (3, 3); a diagonal precision (3,) gives variances (3,)

Laplace and variational inference both return this, so that their answers can be compared with
each other, sampled for a Monte Carlo predictive, and handed to the Bayesian learning rule.

Used in :ref:`primer-laplace` and :ref:`primer-vi`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from blrlib.families import DiagGaussian, Gaussian, Params

__all__ = ["GaussianPosterior"]


@dataclass(frozen=True)
class GaussianPosterior:
    """q(theta) = N(m, S^-1): a family (full or diagonal Gaussian) and its natural parameters."""

    family: Gaussian | DiagGaussian
    lam: Params

    @classmethod
    def from_mean_precision(cls, mean: Tensor, precision: Tensor) -> GaussianPosterior:
        """A full Gaussian for a (P, P) precision, a diagonal one for a (P,) precision."""
        if precision.dim() == 1:
            family: Gaussian | DiagGaussian = DiagGaussian(
                mean.numel(), dtype=mean.dtype, device=mean.device
            )
        else:
            family = Gaussian(mean.numel(), dtype=mean.dtype, device=mean.device)
        return cls(family, family.natural_from_moments(mean, precision))

    @property
    def mean(self) -> Tensor:
        """m, shape (P,)."""
        return self.family.mean_cov(self.lam)[0]

    @property
    def cov(self) -> Tensor:
        """The covariance S^-1, (P, P) for a full Gaussian; the variances (P,) for a diagonal."""
        return self.family.mean_cov(self.lam)[1]

    @property
    def diagonal(self) -> bool:
        """Whether the covariance is diagonal."""
        return isinstance(self.family, DiagGaussian)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n draws, shape (n, P)."""
        return self.family.sample(self.lam, n, generator=generator)

    def kl(self, other: GaussianPosterior) -> Tensor:
        """KL(self || other) for two Gaussians of the same family."""
        if type(self.family) is not type(other.family):
            raise TypeError("other: both Gaussians must be full or both diagonal")
        return self.family.kl(self.lam, other.lam)
