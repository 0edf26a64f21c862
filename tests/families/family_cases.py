"""The table of families under test: a random valid lam and a torch.distributions reference each.

Every family is built in float64 with P = 3 (and K = 2 components for the mixture). The
``sym`` flags mark the entries of lam that are symmetric matrices, whose free coordinates are the
lower triangle (used by the Fisher-matrix test).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributions as D
from torch import Tensor

from blrlib.families import (
    Bernoulli,
    DiagGaussian,
    ExponentialFamily,
    FixedCovGaussian,
    Gaussian,
    GaussianMixture,
    Params,
)

F64 = torch.float64
P = 3
WEIGHTS = torch.tensor([0.3, 0.7], dtype=F64)
FIXED_DIAG = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
FIXED_FULL = torch.tensor([[2.0, 0.3, 0.1], [0.3, 1.5, -0.2], [0.1, -0.2, 1.0]], dtype=F64)


def random_precision(*batch: int) -> Tensor:
    """A well-conditioned random SPD matrix of shape (*batch, P, P)."""
    a = torch.randn(*batch, P, P, dtype=F64)
    return a @ a.mT / P + 0.5 * torch.eye(P, dtype=F64)


def gaussian_moments(lam: Params) -> tuple[Tensor, Tensor]:
    """(m, S) from lam = (S m, -S/2), computed independently of blrlib (batched)."""
    prec = -2.0 * lam[1]
    return torch.linalg.solve(prec, lam[0].unsqueeze(-1)).squeeze(-1), prec


@dataclass(frozen=True)
class Case:
    """One family with a sampler of valid lam and its torch.distributions reference."""

    name: str
    family: ExponentialFamily
    make_lam: Callable[[], Params]
    reference: Callable[[Params], D.Distribution]
    sym: tuple[bool, ...]

    def __repr__(self) -> str:
        return self.name


def _gaussian_lam() -> Params:
    prec = random_precision()
    return prec @ torch.randn(P, dtype=F64), -0.5 * prec


def _gaussian_ref(lam: Params) -> D.Distribution:
    m, prec = gaussian_moments(lam)
    return D.MultivariateNormal(m, precision_matrix=prec)


def _diag_lam() -> Params:
    s = torch.randn(P, dtype=F64).exp()
    return s * torch.randn(P, dtype=F64), -0.5 * s


def _diag_ref(lam: Params) -> D.Distribution:
    s = -2.0 * lam[1]
    return D.Independent(D.Normal(lam[0] / s, s.rsqrt()), 1)


def _fixed_ref(prec: Tensor) -> Callable[[Params], D.Distribution]:
    full = prec.diag() if prec.dim() == 1 else prec

    def ref(lam: Params) -> D.Distribution:
        return D.MultivariateNormal(torch.linalg.solve(full, lam[0]), precision_matrix=full)

    return ref


def _mixture_lam() -> Params:
    prec = random_precision(2)
    m = 2.0 * torch.randn(2, P, dtype=F64)
    return (prec @ m.unsqueeze(-1)).squeeze(-1), -0.5 * prec


def _mixture_ref(lam: Params) -> D.Distribution:
    m, prec = gaussian_moments(lam)
    return D.MixtureSameFamily(
        D.Categorical(probs=WEIGHTS), D.MultivariateNormal(m, precision_matrix=prec)
    )


def _logits() -> Params:
    return (torch.randn(P, dtype=F64),)


GAUSSIAN = Case("gaussian", Gaussian(P, dtype=F64), _gaussian_lam, _gaussian_ref, (False, True))
DIAG = Case("diag", DiagGaussian(P, dtype=F64), _diag_lam, _diag_ref, (False, False))
FIXED_D = Case(
    "fixed_diag", FixedCovGaussian(FIXED_DIAG), _logits, _fixed_ref(FIXED_DIAG), (False,)
)
FIXED_F = Case(
    "fixed_full", FixedCovGaussian(FIXED_FULL), _logits, _fixed_ref(FIXED_FULL), (False,)
)
BERNOULLI = Case(
    "bernoulli",
    Bernoulli(P, dtype=F64),
    _logits,
    lambda lam: D.Independent(D.Bernoulli(logits=lam[0]), 1),
    (False,),
)
MIXTURE = Case(
    "mixture",
    GaussianMixture(WEIGHTS, P, dtype=F64),
    _mixture_lam,
    _mixture_ref,
    (False, True),
)

EXP_FAMILIES = [GAUSSIAN, DIAG, FIXED_D, FIXED_F, BERNOULLI]
ALL = [*EXP_FAMILIES, MIXTURE]
GAUSSIANS = [GAUSSIAN, DIAG, FIXED_D, FIXED_F, MIXTURE]


def draw(case: Case, lam: Params, n: int, generator: torch.Generator | None = None) -> Tensor:
    """n draws (rsample, or sample for the Bernoulli)."""
    if isinstance(case.family, Bernoulli):
        return case.family.sample(lam, n, generator=generator)
    return case.family.rsample(lam, n, generator=generator)


def second_moment(ref: D.Distribution) -> Tensor:
    """E[theta theta^T] of a reference distribution, shape (P, P)."""
    if isinstance(ref, D.MixtureSameFamily):
        comp = ref.component_distribution
        outer = comp.covariance_matrix + comp.mean.unsqueeze(-1) * comp.mean.unsqueeze(-2)
        return (ref.mixture_distribution.probs[:, None, None] * outer).sum(0)
    if isinstance(ref, D.MultivariateNormal):
        cov = ref.covariance_matrix
    else:  # independent coordinates
        cov = ref.variance.diag()
    return cov + ref.mean.unsqueeze(-1) * ref.mean.unsqueeze(-2)
