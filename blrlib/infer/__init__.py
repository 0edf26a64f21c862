"""The baselines the book compares the Bayesian learning rule with (a primer on approximate
inference): MAP, Laplace, predictives, variational inference, MCMC and MC dropout.

    from blrlib import infer
    bm = infer.BayesModel(net, "bernoulli", prior_precision=1.0)
    theta_map = infer.fit_map(bm, X, y)
    q = infer.laplace(bm, X, y, theta_map)        # a GaussianPosterior
"""

from blrlib.infer.gaussian import GaussianPosterior
from blrlib.infer.model import BayesModel, Likelihood

__all__ = ["BayesModel", "GaussianPosterior", "Likelihood"]
