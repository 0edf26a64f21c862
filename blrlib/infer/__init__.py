"""The baselines the book compares the Bayesian learning rule with (a primer on approximate
inference): MAP, Laplace, predictives, variational inference, MCMC, MC dropout, and the
Kalman/RTS smoother (message passing for the conjugate models of Sec 5.1).

    from blrlib import infer
    bm = infer.BayesModel(net, "bernoulli", prior_precision=1.0)
    theta_map = infer.fit_map(bm, X, y)
    q = infer.laplace(bm, X, y, theta_map)        # a GaussianPosterior
    infer.log_evidence(bm, X, y, q)               # the Laplace estimate of log p(y | X)

Derived in :ref:`primer-map`, :ref:`primer-hmc`, :ref:`primer-laplace`, :ref:`primer-vi` and
:ref:`primer-probit`; MC dropout in :ref:`dropout-uq`, the Kalman/RTS smoother in
:ref:`conj-gp-ssm`.
"""

from blrlib.infer.dropout import fit_dropout, mc_dropout_predict
from blrlib.infer.gaussian import GaussianPosterior
from blrlib.infer.kalman import kalman_filter, kalman_smoother
from blrlib.infer.laplace import laplace, log_evidence
from blrlib.infer.map import fit_map
from blrlib.infer.mcmc import diagnostics, draws, from_draws, hmc, log_prob_fn, metropolis
from blrlib.infer.model import BayesModel, Likelihood
from blrlib.infer.predictive import linearised, predict, probit, probit_multiclass
from blrlib.infer.vi import elbo, fit_vi

__all__ = [
    "BayesModel",
    "GaussianPosterior",
    "Likelihood",
    "diagnostics",
    "draws",
    "elbo",
    "fit_dropout",
    "fit_map",
    "fit_vi",
    "from_draws",
    "hmc",
    "kalman_filter",
    "kalman_smoother",
    "laplace",
    "linearised",
    "log_evidence",
    "log_prob_fn",
    "mc_dropout_predict",
    "metropolis",
    "predict",
    "probit",
    "probit_multiclass",
]
