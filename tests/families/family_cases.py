"""The table of families under test: a random valid lam and a torch.distributions reference each.

Every family is built in float64 with P = 3 (and K = 2 components for the mixture). The
``sym`` flags mark the entries of lam that are symmetric matrices, whose free coordinates are the
lower triangle (used by the Fisher-matrix test).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributions as D
from torch import Tensor

from blrlib.families import (
    Bernoulli,
    Beta,
    Categorical,
    DiagGaussian,
    Dirichlet,
    ExponentialFamily,
    FixedCovGaussian,
    Gamma,
    Gaussian,
    GaussianMixture,
    NormalGamma,
    NormalWishart,
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


# ------------------------------------------------------- conjugate families (Sec 5)
def _positive(*shape: int) -> Tensor:
    return 0.5 + 3.0 * torch.rand(*shape, dtype=F64)


def _beta_lam() -> Params:
    return _positive(P) - 1.0, _positive(P) - 1.0


def _gamma_lam() -> Params:
    return _positive(P) - 1.0, -_positive(P)


def _normal_gamma_lam() -> Params:
    m0, kappa, a, b = torch.randn(2, dtype=F64), _positive(2), _positive(2), _positive(2)
    return kappa * m0, -0.5 * kappa, -b - 0.5 * kappa * m0**2, a - 0.5


class NormalGammaRef:
    """Gamma(tau | a, b) N(m | m0, 1 / (kappa tau)) per pair, from torch.distributions parts."""

    def __init__(self, lam: Params) -> None:
        self.kappa = -2.0 * lam[1]
        self.m0 = lam[0] / self.kappa
        self.a = lam[3] + 0.5
        self.b = -lam[2] - 0.5 * self.kappa * self.m0**2
        self.tau = D.Gamma(self.a, self.b)

    def log_prob(self, theta: Tensor) -> Tensor:
        d = self.m0.numel()
        m, tau = theta[..., :d], theta[..., d:]
        normal = D.Normal(self.m0, (self.kappa * tau).rsqrt())
        return (self.tau.log_prob(tau) + normal.log_prob(m)).sum(-1)

    def entropy(self) -> Tensor:
        # H = H(tau) + E_tau[H(N(m0, 1 / (kappa tau)))], E[log tau] = psi(a) - log b
        e_log_tau = torch.digamma(self.a) - self.b.log()
        h_normal = 0.5 * (1.0 + torch.log(2 * torch.pi / self.kappa) - e_log_tau)
        return (self.tau.entropy() + h_normal).sum()

    def kl(self, other: NormalGammaRef) -> Tensor:
        # KL(Gamma) + E_q(tau)[KL of the two normals given tau]
        r = other.kappa / self.kappa
        normal = 0.5 * (
            r - 1.0 - r.log() + other.kappa * self.a / self.b * (self.m0 - other.m0) ** 2
        )
        return (D.kl_divergence(self.tau, other.tau) + normal).sum()


N_CAT, K_CAT = 3, 4


def _categorical_lam() -> Params:
    return (torch.randn(N_CAT, K_CAT - 1, dtype=F64),)


BETA = Case(
    "beta",
    Beta(P, dtype=F64),
    _beta_lam,
    lambda lam: D.Independent(D.Beta(lam[0] + 1, lam[1] + 1), 1),
    (False, False),
)
GAMMA = Case(
    "gamma",
    Gamma(P, dtype=F64),
    _gamma_lam,
    lambda lam: D.Independent(D.Gamma(lam[0] + 1, -lam[1]), 1),
    (False, False),
)
DIRICHLET = Case(
    "dirichlet",
    Dirichlet(P, dtype=F64),
    lambda: (_positive(P) - 1.0,),
    lambda lam: D.Dirichlet(lam[0] + 1),
    (False,),
)
CATEGORICAL = Case(
    "categorical",
    Categorical(N_CAT, n_classes=K_CAT, dtype=F64),
    _categorical_lam,
    lambda lam: D.Independent(D.Categorical(logits=torch.nn.functional.pad(lam[0], (0, 1))), 1),
    (False,),
)
NORMAL_GAMMA = Case(
    "normal_gamma", NormalGamma(2, dtype=F64), _normal_gamma_lam, NormalGammaRef, (False,) * 4
)


D_NW = 2


def _normal_wishart_lam() -> Params:
    m0, beta = torch.randn(D_NW, dtype=F64), _positive(1)[0]
    a = torch.randn(D_NW, D_NW, dtype=F64)
    w = a @ a.T / D_NW + 0.3 * torch.eye(D_NW, dtype=F64)
    nu = D_NW - 1 + _positive(1)[0]
    return NormalWishart(D_NW, dtype=F64).natural_from_moments(m0, beta, w, nu)


class NormalWishartRef:
    """Wishart(Lambda | W, nu) N(m | m0, (beta Lambda)^-1) from torch.distributions parts.

    The KL is the Wishart KL in closed form (Penny 2001) plus E_q(Lambda) of the Gaussian KL.
    """

    def __init__(self, lam: Params) -> None:
        self.beta = -2.0 * lam[1][0]
        self.m0 = lam[0] / self.beta
        self.w = torch.linalg.inv(-2.0 * lam[2] - self.beta * torch.outer(self.m0, self.m0))
        self.nu = 2.0 * lam[3][0] + D_NW
        self.wishart = D.Wishart(self.nu, covariance_matrix=self.w)

    def _split(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        return theta[..., :D_NW], theta[..., D_NW:].unflatten(-1, (D_NW, D_NW))

    def log_prob(self, theta: Tensor) -> Tensor:
        m, prec = self._split(theta)
        normal = D.MultivariateNormal(self.m0, precision_matrix=self.beta * prec)
        return self.wishart.log_prob(prec) + normal.log_prob(m)

    def _e_logdet(self) -> Tensor:
        i = torch.arange(D_NW, dtype=F64)
        return torch.digamma((self.nu - i) / 2).sum() + D_NW * math.log(2) + torch.logdet(self.w)

    def entropy(self) -> Tensor:
        # H = H(Wishart) + E[H(N(m0, (beta Lambda)^-1))]
        h_normal = 0.5 * (D_NW * (1 + math.log(2 * math.pi) - self.beta.log()) - self._e_logdet())
        return self.wishart.entropy() + h_normal

    def kl(self, other: NormalWishartRef) -> Tensor:
        i = torch.arange(D_NW, dtype=F64)
        psi = torch.digamma((self.nu - i) / 2).sum()
        kl_w = (
            0.5 * (self.nu - other.nu) * psi
            - torch.mvlgamma(self.nu / 2, D_NW)
            + torch.mvlgamma(other.nu / 2, D_NW)
            + 0.5 * other.nu * (torch.logdet(other.w) - torch.logdet(self.w))
            + 0.5 * self.nu * (torch.trace(torch.linalg.solve(other.w, self.w)) - D_NW)
        )
        r, diff = other.beta / self.beta, self.m0 - other.m0
        kl_n = 0.5 * (D_NW * (r - 1 - r.log()) + other.beta * self.nu * diff @ self.w @ diff)
        return kl_w + kl_n


NORMAL_WISHART = Case(
    "normal_wishart",
    NormalWishart(D_NW, dtype=F64),
    _normal_wishart_lam,
    NormalWishartRef,
    (False,) * 4,
)
CONJUGATE = [BETA, GAMMA, DIRICHLET, CATEGORICAL, NORMAL_GAMMA, NORMAL_WISHART]
