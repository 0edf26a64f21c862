"""The table of bad inputs: each public entry point refuses them, naming the argument.

Every row is (a call, the exception it must raise, a regular expression its message must
match). The regular expression names the argument and, where there is one, the expected
shape or range, so that a message that stops naming them fails the test. Inputs are built
inside the calls (float64, the suite's default), never at import.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from blrlib import blr, conjugate, data, em, families, infer, metrics, optim, sgd_bayes

N = 20


def _xy(n_out: int = 1, likelihood: str = "gaussian") -> tuple[infer.BayesModel, torch.Tensor]:
    bm = infer.BayesModel(nn.Linear(3, n_out), likelihood, prior_precision=1.0)
    return bm, torch.randn(N, 3)


def _loss(likelihood: str, y: object, *, n_out: int = 1, X: torch.Tensor | None = None):
    bm, X0 = _xy(n_out, likelihood)
    return bm.loss(bm.theta0(), X0 if X is None else X, y)


def _von(n_data: object) -> optim.VON:
    return optim.VON(nn.Linear(2, 1).parameters(), lr=0.1, n_data=n_data)


def _em_y() -> torch.Tensor:
    return torch.randn(10, 2)


def _gmm_theta(y: torch.Tensor, k: int = 2) -> tuple[torch.Tensor, ...]:
    return em.GaussianMixtureEM.init(y, k, generator=torch.Generator().manual_seed(0))


def _beta_prior() -> tuple[families.Beta, tuple[torch.Tensor, ...]]:
    q = families.Beta(1)
    return q, q.natural_from_shapes(2.0, 2.0)


def _dirichlet_prior() -> tuple[families.Dirichlet, tuple[torch.Tensor, ...]]:
    q = families.Dirichlet(3)
    return q, q.natural_from_concentration(torch.ones(3))


def _gauss_prior(dim: int = 2) -> tuple[families.Gaussian, tuple[torch.Tensor, ...]]:
    q = families.Gaussian(dim)
    return q, q.natural_from_moments(torch.zeros(dim), torch.eye(dim))


def _minibatch(y: torch.Tensor, likelihood: str = "gaussian", n_out: int = 1):
    bm, X = _xy(n_out, likelihood)
    return sgd_bayes.minibatch_loss(bm, X, y)


def _quadratic(theta: torch.Tensor) -> torch.Tensor:
    return 0.5 * (theta**2).sum()


# (id, call, exception, regex)
ROWS: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    # ------------------------------------------------ infer.BayesModel targets and inputs
    ("model-gaussian-y-N2", lambda: _loss("gaussian", torch.randn(N, 2)),
     ValueError, r"^y must have shape \(20,\) or \(20, 1\); got \(20, 2\)"),
    ("model-gaussian-y-short", lambda: _loss("gaussian", torch.randn(N - 1)),
     ValueError, r"^y must have shape \(20,\) or \(20, 1\); got \(19,\)"),
    ("model-gaussian-2out-y-N", lambda: _loss("gaussian", torch.randn(N), n_out=2),
     ValueError, r"^y must have shape \(20, 2\), like the model's outputs; got \(20,\)"),
    ("model-bernoulli-label-2", lambda: _loss("bernoulli", torch.arange(N) % 2 * 2.0),
     ValueError, r"^y must hold class indices 0\.\.1; got e\.g\. \[2\.0"),
    ("model-bernoulli-label-half", lambda: _loss("bernoulli", torch.full((N,), 0.5)),
     ValueError, r"^y must hold class indices 0\.\.1"),
    ("model-categorical-class-5-of-3", lambda: _loss("categorical", torch.full((N,), 5), n_out=3),
     ValueError, r"^y must hold class indices 0\.\.2; got e\.g\. \[5"),
    ("model-categorical-negative", lambda: _loss("categorical", -torch.ones(N), n_out=3),
     ValueError, r"^y must hold class indices 0\.\.2"),
    ("model-categorical-nan", lambda: _loss("categorical", torch.full((N,), math.nan), n_out=3),
     ValueError, r"^y must hold class indices 0\.\.2; got NaN or inf"),
    ("model-categorical-onehot", lambda: _loss("categorical", torch.eye(3)[torch.zeros(N).long()],
                                                n_out=3),
     ValueError, r"^y must have shape \(20,\) or \(20, 1\); got \(20, 3\)"),
    ("model-y-list", lambda: _loss("gaussian", [0.0] * N),
     TypeError, r"^y must be a torch\.Tensor; got list"),
    ("model-X-float32", lambda: _loss("gaussian", torch.randn(N), X=torch.randn(N, 3).float()),
     TypeError, r"^X has dtype torch\.float32 but theta .* has torch\.float64"),
    ("model-X-empty", lambda: _loss("gaussian", torch.randn(0), X=torch.randn(0, 3)),
     ValueError, r"^X must have shape \(N, \.\.\.\) with N >= 1; got \(0, 3\)"),
    ("model-X-numpy", lambda: _loss("gaussian", torch.randn(N), X=np.zeros((N, 3))),
     TypeError, r"^X must be a torch\.Tensor; got ndarray"),
    ("model-prior-precision-0", lambda: infer.BayesModel(nn.Linear(2, 1), "gaussian",
                                                          prior_precision=0.0),
     ValueError, r"^prior_precision must be positive"),
    ("model-not-a-module", lambda: infer.BayesModel(lambda x: x, "gaussian", prior_precision=1.0),
     TypeError, r"^model must be a torch\.nn\.Module"),
    ("model-unknown-likelihood", lambda: infer.BayesModel(nn.Linear(2, 1), "poisson",
                                                           prior_precision=1.0),
     ValueError, r"likelihood"),
    ("fit_map-y-N2", lambda: infer.fit_map(*_xy(), torch.randn(N, 2)),
     ValueError, r"^y must have shape \(20,\) or \(20, 1\)"),
    ("laplace-bernoulli-label-3", lambda: infer.laplace(
        *_xy(1, "bernoulli"), torch.full((N,), 3.0), torch.zeros(4)),
     ValueError, r"^y must hold class indices 0\.\.1"),
    ("fit_vi-y-short", lambda: infer.fit_vi(*_xy(), torch.randn(5), n_steps=1, n_samples=1),
     ValueError, r"^y must have shape \(20,\) or \(20, 1\); got \(5,\)"),
    ("log_evidence-q-tuple", lambda: infer.log_evidence(*_xy(), torch.randn(N), (None, None)),
     TypeError, r"^q must be a GaussianPosterior"),
    # ------------------------------------------------------------------------- metrics
    ("metrics-accuracy-class-5-of-3", lambda: metrics.accuracy(
        torch.full((4, 3), 1 / 3), torch.tensor([0, 1, 2, 5])),
     ValueError, r"^y: labels must be class indices 0\.\.2"),
    ("metrics-nll-empty", lambda: metrics.nll(torch.rand(0), torch.ones(0)),
     ValueError, r"^y must have shape \(N,\) or \(N, 1\) with N >= 1; got \(0,\)"),
    ("metrics-brier-y-N2", lambda: metrics.brier(torch.rand(4), torch.ones(4, 2)),
     ValueError, r"^y: expected labels of shape \(N,\) or \(N, 1\); got \(4, 2\)"),
    ("metrics-ece-probs-rows", lambda: metrics.ece(torch.rand(5, 3), torch.zeros(4)),
     ValueError, r"^probs: expected \(N,\) or \(N, K\) for N = 4; got \(5, 3\)"),
    ("metrics-ece-n_bins-0", lambda: metrics.ece(torch.rand(4), torch.ones(4), n_bins=0),
     ValueError, r"^n_bins must be an int >= 1; got 0"),
    ("metrics-nll-not-probabilities", lambda: metrics.nll(torch.tensor([1.5, 0.2]),
                                                            torch.ones(2)),
     ValueError, r"^probs: must be probabilities in \[0, 1\]"),
    ("metrics-accuracy-integer-probs", lambda: metrics.accuracy(torch.ones(3).long(),
                                                                  torch.ones(3)),
     TypeError, r"^probs must be a floating-point tensor"),
    ("metrics-accuracy-list", lambda: metrics.accuracy([0.2, 0.9], torch.ones(2)),
     TypeError, r"^probs must be a torch\.Tensor; got list"),
    ("metrics-gaussian_nll-y-N2", lambda: metrics.gaussian_nll(
        torch.zeros(4), torch.ones(4), torch.zeros(4, 2)),
     ValueError, r"^y must have shape \(4,\) or \(4, 1\); got \(4, 2\)"),
    ("metrics-gaussian_nll-float32", lambda: metrics.gaussian_nll(
        torch.zeros(4), torch.ones(4).float(), torch.zeros(4)),
     TypeError, r"^var has dtype torch\.float32 but mean has torch\.float64"),
    # ---------------------------------------------------------- conjugate likelihoods
    ("conjugate-bernoulli-label-2", lambda: conjugate.posterior(
        *_beta_prior(), conjugate.BernoulliLikelihood(), torch.tensor([1.0, 2.0])),
     ValueError, r"^y: Bernoulli observations must be 0 or 1"),
    ("conjugate-bernoulli-y-N3", lambda: conjugate.posterior(
        *_beta_prior(), conjugate.BernoulliLikelihood(), torch.ones(4, 3)),
     ValueError, r"^y must have shape \(N, 1\), got \(4, 3\)"),
    ("conjugate-categorical-class-3-of-3", lambda: conjugate.posterior(
        *_dirichlet_prior(), conjugate.CategoricalLikelihood(), torch.tensor([0, 3])),
     ValueError, r"^y: categorical observations must be integers in \[0, 3\)"),
    ("conjugate-gaussian-design-shape", lambda: conjugate.posterior(
        *_gauss_prior(), conjugate.GaussianLikelihood(1.0, design=torch.ones(5, 3)),
        torch.zeros(5)),
     ValueError, r"^design must have shape \(5, 2\), got \(5, 3\)"),
    ("conjugate-y-float32", lambda: conjugate.posterior(
        *_beta_prior(), conjugate.BernoulliLikelihood(), torch.ones(3).float()),
     TypeError, r"^y has dtype torch\.float32 but the family has torch\.float64"),
    ("conjugate-y-empty", lambda: conjugate.posterior(
        *_gauss_prior(), conjugate.GaussianLikelihood(1.0), torch.zeros(0, 2)),
     ValueError, r"^y must hold at least one observation; got shape \(0, 2\)"),
    ("conjugate-poisson-negative", lambda: conjugate.posterior(
        families.Gamma(1), families.Gamma(1).natural_from_shape_rate(1.0, 1.0),
        conjugate.PoissonLikelihood(), torch.tensor([1.0, -1.0])),
     ValueError, r"^y: Poisson observations must be non-negative integers"),
    ("conjugate-noise-var-0", lambda: conjugate.posterior(
        *_gauss_prior(), conjugate.GaussianLikelihood(0.0), torch.zeros(3, 2)),
     ValueError, r"^noise_var must be finite and positive"),
    # ---------------------------------------------------------------------------- em
    ("em-run-empty-y", lambda: em.run(em.GaussianMixtureEM(), torch.zeros(0, 2),
                                      _gmm_theta(_em_y()), n_iter=1),
     ValueError, r"^y must hold at least one data point"),
    ("em-init-K-above-N", lambda: _gmm_theta(_em_y()[:2], 3),
     ValueError, r"^n_components=3 exceeds the number of data points 2"),
    ("em-run-y-float32", lambda: em.run(em.GaussianMixtureEM(), _em_y().float(),
                                        _gmm_theta(_em_y()), n_iter=1),
     TypeError, r"^theta0 has dtype torch\.float64 but y has torch\.float32"),
    ("em-run-theta-wrong-D", lambda: em.run(em.GaussianMixtureEM(), torch.randn(10, 3),
                                            _gmm_theta(_em_y()), n_iter=1),
     ValueError, r"^theta0\[0\] must have shape \(K, 3\) for y \(N, 3\); got \(2, 2\)"),
    ("em-run-y-1d", lambda: em.run(em.GaussianMixtureEM(), torch.randn(10),
                                   _gmm_theta(_em_y()), n_iter=1),
     ValueError, r"^y must have shape \(N, D\), got \(10,\)"),
    ("em-run-theta-not-tuple", lambda: em.run(em.GaussianMixtureEM(), _em_y(), torch.zeros(2),
                                              n_iter=1),
     TypeError, r"^theta0 must be a tuple of tensors"),
    ("em-run-tol-negative", lambda: em.run(em.GaussianMixtureEM(), _em_y(),
                                           _gmm_theta(_em_y()), n_iter=1, tol=-1.0),
     ValueError, r"^tol must be positive"),
    ("em-online-kappa", lambda: em.run_online(em.GaussianMixtureEM(), _em_y(), _gmm_theta(_em_y()),
                                              n_passes=1, batch_size=2, kappa=0.3),
     ValueError, r"^kappa must be in \(0\.5, 1\]"),
    # --------------------------------------------------------------------------- data
    ("data-logistic-n-float", lambda: data.logistic_regression(1.5, 2),
     TypeError, r"^n must be an int >= 1; got float"),
    ("data-logistic-dim-0", lambda: data.logistic_regression(5, 0),
     ValueError, r"^dim must be an int >= 1; got 0"),
    ("data-moons-n-1", lambda: data.two_moons(1),
     ValueError, r"^n must be an int >= 2; got 1"),
    ("data-linear-noise-0", lambda: data.linear_regression(5, 2, noise=0.0),
     ValueError, r"^noise must be positive and finite; got 0\.0"),
    ("data-sin-high-below-low", lambda: data.sin_regression(5, low=1.0, high=0.0),
     ValueError, r"^high must exceed low; got low=1\.0, high=0\.0"),
    ("data-standardise-one-row", lambda: data.standardise(torch.ones(1, 2)),
     ValueError, r"^train: needs shape \(N, \.\.\.\) with N >= 2; got \(1, 2\)"),
    ("data-standardise-others-columns", lambda: data.standardise(torch.randn(4, 2),
                                                                  torch.randn(3, 5)),
     ValueError, r"^others\[0\]: rows of shape \(2,\) like train's; got \(3, 5\)"),
    # ----------------------------------------------------------------------- samplers
    ("sampler-model-not-BayesModel", lambda: sgd_bayes.minibatch_loss(
        nn.Linear(3, 1), torch.randn(N, 3), torch.randn(N)),
     TypeError, r"^model must be a blrlib\.infer\.BayesModel"),
    ("sampler-y-N2", lambda: _minibatch(torch.randn(N, 2)),
     ValueError, r"^y must have shape \(20,\) or \(20, 1\); got \(20, 2\)"),
    ("sampler-bernoulli-label-2", lambda: _minibatch(torch.full((N,), 2.0), "bernoulli"),
     ValueError, r"^y must hold class indices 0\.\.1"),
    ("sampler-n_data-0", lambda: sgd_bayes.run_chains(
        _minibatch(torch.randn(N)), torch.zeros(2, 4), n_data=0, batch_size=1, eps=0.1,
        n_steps=1),
     ValueError, r"^n_data must be an int >= 1; got 0"),
    # ----------------------------------------------------------------- n_data of optim
    ("optim-n_data-half", lambda: _von(0.5),
     ValueError, r"^n_data must be a finite number >= 1 .*; got 0\.5"),
    ("optim-n_data-0-tensor", lambda: _von(torch.tensor(0)),
     ValueError, r"^n_data must be a finite number >= 1 .*; got 0\.0"),
    ("optim-n_data-nan", lambda: _von(math.nan),
     ValueError, r"^n_data must be a finite number >= 1"),
    ("optim-n_data-string", lambda: _von("100"),
     TypeError, r"^n_data must be a number >= 1; got str"),
    ("optim-n_data-vector", lambda: _von(torch.tensor([10, 10])),
     TypeError, r"^n_data must be a number >= 1; got an array of shape"),
    ("optim-n_data-bool", lambda: _von(True),
     TypeError, r"^n_data must be a number >= 1; got bool"),
    ("optim-bayesbinn-n_data-0", lambda: optim.BayesBiNN(nn.Linear(2, 1).parameters(),
                                                          n_data=0),
     ValueError, r"^n_data must be a finite number >= 1"),
    # ------------------------------------------------------ families and the engine
    ("family-beta-dim-0", lambda: families.Beta(0),
     ValueError, r"^dim must be a positive int, got 0"),
    ("family-gaussian-dim-float", lambda: families.Gaussian(1.5),
     TypeError, r"^dim must be a positive int, got float"),
    ("family-dirichlet-one-category", lambda: families.Dirichlet(1),
     ValueError, r"^dim must be >= 2 \(the number of categories\)"),
    ("family-gaussian-int-dtype", lambda: families.Gaussian(2, dtype=torch.int64),
     TypeError, r"^dtype must be a floating-point torch\.dtype"),
    ("family-beta-shape-negative", lambda: families.Beta(1).natural_from_shapes(-1.0, 2.0),
     ValueError, r"a, b"),
    ("blr-mc-n_samples-0", lambda: blr.step(*_gauss_prior(), _quadratic, rho=0.1,
                                            estimator="mc", n_samples=0),
     ValueError, r"^n_samples must be a positive integer; got 0"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "pattern"), [r[1:] for r in ROWS],
                         ids=[r[0] for r in ROWS])  # fmt: skip
def test_bad_input_is_refused_naming_the_argument(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_the_table_has_at_least_forty_distinct_rows():
    assert len(ROWS) >= 40 and len({r[0] for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize(
    "n_data", [100, 100.0, np.int64(100), np.float32(100.0), torch.tensor(100), torch.tensor(1e2)]
)
def test_n_data_takes_python_numpy_and_0d_tensor_numbers(n_data):
    """Every spelling of N gives the same optimizer setting, a Python float."""
    group = _von(n_data).param_groups[0]
    assert type(group["n_data"]) is float and group["n_data"] == 100.0


def test_a_single_column_target_is_read_as_a_vector_not_broadcast():
    """y of shape (N, 1) gives the same loss, MAP and scores as y of shape (N,)."""
    bm, X = _xy()
    y = torch.randn(N)
    theta = bm.theta0()
    torch.testing.assert_close(bm.loss(theta, X, y[:, None]), bm.loss(theta, X, y))
    p = torch.rand(N)
    labels = (torch.rand(N) < 0.5).double()
    assert metrics.brier(p, labels[:, None]) == metrics.brier(p, labels)
    q, prior = _beta_prior()
    like = conjugate.BernoulliLikelihood()
    torch.testing.assert_close(conjugate.posterior(q, prior, like, labels),
                               conjugate.posterior(q, prior, like, labels[:, None]))  # fmt: skip


def test_mc_without_n_samples_warns_and_with_it_does_not():
    with pytest.warns(UserWarning, match="n_samples: estimator='mc' without n_samples"):
        blr.step(*_gauss_prior(), _quadratic, rho=0.1, estimator="mc")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        blr.step(*_gauss_prior(), _quadratic, rho=0.1, estimator="mc", n_samples=1)
