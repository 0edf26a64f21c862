"""Candidate families Q of the Bayesian learning rule (Khan & Rue 2023, Sec 1.2, 3, 4).

    import torch
    from blrlib.families import Gaussian
    q = Gaussian(2, dtype=torch.float64)
    lam = q.natural_from_mean_precision(torch.zeros(2), torch.eye(2))
    mu = q.to_expectation(lam)

Each family maps natural parameters ``lam`` to expectation parameters ``mu`` (and back), and
provides log-densities, entropies, KL divergences, reparameterised draws and the natural gradient
of the negative entropy used by the BLR (App B).
Beta, Gamma, Dirichlet, Normal-Gamma and Normal-Wishart are the conjugate families of Sec 5.1,
and the categorical family is the E-step family of EM (Sec 5.2). ``SignBernoulli`` is the
{-1, +1} family of binary networks, with its Concrete relaxation (Sec 4.5), and ``SpikeSlab``
is dropout's candidate (Sec 4.3, Eq 41). ``LearnedGaussianMixture`` is the mixture candidate
with learned weights (Lin et al. 2019), Table 1's non-conjugate VI "(New)" row (Sec 5.4).

Derived in :doc:`/book/blr` (exponential families and their two parametrisations); the
conjugate families in :ref:`conj-bayes`, the categorical in :ref:`conj-em`, the Bernoullis in
:ref:`binary-bayesbinn`, the spike and slab in :ref:`dropout-derivation` and the mixtures in
:ref:`gnr-mixture` and :ref:`vi-mixture`.
"""

from blrlib.families._base import ExponentialFamily, Order, Params
from blrlib.families.bernoulli import Bernoulli
from blrlib.families.beta import Beta
from blrlib.families.categorical import Categorical
from blrlib.families.diag_gaussian import DiagGaussian, Momentum, blr_update_
from blrlib.families.dirichlet import Dirichlet
from blrlib.families.fixed_gaussian import FixedCovGaussian
from blrlib.families.gamma import Gamma
from blrlib.families.gaussian import Gaussian
from blrlib.families.mixture import GaussianMixture
from blrlib.families.mixture_weights import LearnedGaussianMixture
from blrlib.families.normal_gamma import NormalGamma
from blrlib.families.normal_wishart import NormalWishart
from blrlib.families.sign_bernoulli import SignBernoulli, bayesbinn_update_
from blrlib.families.spike_slab import SpikeSlab

__all__ = [
    "Bernoulli",
    "Beta",
    "Categorical",
    "DiagGaussian",
    "Dirichlet",
    "ExponentialFamily",
    "FixedCovGaussian",
    "Gamma",
    "Gaussian",
    "GaussianMixture",
    "LearnedGaussianMixture",
    "Momentum",
    "NormalGamma",
    "NormalWishart",
    "Order",
    "Params",
    "SignBernoulli",
    "bayesbinn_update_",
    "SpikeSlab",
    "blr_update_",
]
