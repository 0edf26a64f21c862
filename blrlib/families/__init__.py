"""Candidate families Q of the Bayesian learning rule (Khan & Rue 2023, Sec 1.2, 3, 4).

    import torch
    from blrlib.families import Gaussian
    q = Gaussian(2, dtype=torch.float64)
    lam = q.natural_from_moments(torch.zeros(2), torch.eye(2))
    mu = q.to_expectation(lam)

Each family maps natural parameters ``lam`` to expectation parameters ``mu`` (and back), and
provides log-densities, entropies, KL divergences, reparameterised draws and the natural gradient
of the negative entropy used by the BLR (App B).
"""

from blrlib.families._base import ExponentialFamily, Order, Params
from blrlib.families.bernoulli import Bernoulli
from blrlib.families.diag_gaussian import DiagGaussian, Momentum, blr_update_
from blrlib.families.fixed_gaussian import FixedCovGaussian
from blrlib.families.gaussian import Gaussian
from blrlib.families.mixture import GaussianMixture

__all__ = [
    "Bernoulli",
    "DiagGaussian",
    "ExponentialFamily",
    "FixedCovGaussian",
    "Gaussian",
    "GaussianMixture",
    "Momentum",
    "Order",
    "Params",
    "blr_update_",
]
