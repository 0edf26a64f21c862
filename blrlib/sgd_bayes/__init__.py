"""SGD as approximate Bayesian inference (Mandt, Hoffman & Blei 2017) and its bridge to the BLR.

    from blrlib import infer, sgd_bayes
    A, C = sgd_bayes.local_quadratic(model, X, y, theta_map)     # Hessian, gradient noise
    eps = sgd_bayes.optimal_learning_rate(C, batch_size=10, n_data=len(X))
    Sigma = sgd_bayes.stationary_covariance(A, C, eps=eps, batch_size=10)
    chains = sgd_bayes.run_chains(sgd_bayes.minibatch_loss(model, X, y), starts, ...)

The Ornstein-Uhlenbeck view in four modules: ``noise`` (the gradient noise C), ``stationary``
(the stationary covariance of constant SGD), ``optimal`` (the KL-optimal learning rate and
preconditioner) and ``averaging`` (Polyak and window averages); ``samplers``: constant SGD,
SGLD, SGFS and momentum as vectorised chains on the BLR engine, with SGLD's and SGFS's noise;
``vem``: variational EM with constant SGD.

Derived in :ref:`sgd-ou`, :ref:`sgd-optimal-lr`, :ref:`sgd-samplers`, :ref:`sgd-averaging`,
:ref:`sgd-vem` and :ref:`sgd-bridge` (the bridge to the BLR).
"""

from blrlib.sgd_bayes.averaging import polyak_covariance, window_covariance
from blrlib.sgd_bayes.noise import gradient_noise_covariance, per_example_gradients
from blrlib.sgd_bayes.optimal import gaussian_kl, optimal_learning_rate, optimal_preconditioner
from blrlib.sgd_bayes.samplers import (
    Chains,
    Sampler,
    local_quadratic,
    minibatch_loss,
    run_chains,
    sgfs_step,
    sgld_noise,
)
from blrlib.sgd_bayes.stationary import least_squares_covariance, stationary_covariance
from blrlib.sgd_bayes.vem import evidence_prior_precision, log_evidence, vem_prior_precision

__all__ = [
    "Chains",
    "Sampler",
    "gaussian_kl",
    "gradient_noise_covariance",
    "evidence_prior_precision",
    "least_squares_covariance",
    "local_quadratic",
    "log_evidence",
    "minibatch_loss",
    "optimal_learning_rate",
    "optimal_preconditioner",
    "per_example_gradients",
    "polyak_covariance",
    "run_chains",
    "sgfs_step",
    "sgld_noise",
    "stationary_covariance",
    "vem_prior_precision",
    "window_covariance",
]
