"""HMC and random-walk Metropolis: they recover known posteriors within Monte Carlo error.

Every tolerance is 5 Monte Carlo standard errors, SE = sd / sqrt(ESS) with ESS from
``arviz.ess(..., method="mean")``: a correct sampler fails such a check with probability about
6e-7 per number, and a sampler that is wrong by a few percent fails it at these sizes. The runs
are seeded, so the outcome is fixed, and they are shared between tests through module fixtures,
which pass their own generator and float64 tensors (module fixtures run before the autouse
seed-and-float64 fixture of ``tests/conftest.py``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.testing import assert_close

from blrlib import data
from blrlib.infer import mcmc
from blrlib.infer.mcmc import draws, hmc, log_prob_fn, metropolis
from blrlib.infer.model import BayesModel

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing", category=FutureWarning)
    import arviz as az

F64 = torch.float64
# A correlated Gaussian with scales 1 and 10: without the mass matrix, HMC's step would be set
# by the narrow direction and the wide one would barely move within 1000 draws.
MEAN = torch.tensor([1.0, -2.0], dtype=F64)
SD = torch.tensor([1.0, 10.0], dtype=F64)
RHO = 0.8
COV = torch.tensor([[1.0, RHO], [RHO, 1.0]], dtype=F64) * SD[:, None] * SD[None, :]
PREC = torch.linalg.inv(COV)


def gaussian_log_prob(theta: torch.Tensor) -> torch.Tensor:
    """log N(theta | MEAN, COV) up to a constant, for thetas (C, 2)."""
    d = theta - MEAN
    return -0.5 * ((d @ PREC) * d).sum(-1)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _init(n_chains: int, seed: int = 1) -> torch.Tensor:
    """Overdispersed starting points, so that R-hat can see chains that have not mixed."""
    return MEAN + 3 * SD * torch.randn(n_chains, 2, generator=_gen(seed), dtype=F64)


@pytest.fixture(scope="module")
def gaussian_hmc() -> az.InferenceData:
    # 4 chains x 1000 draws, 8 leapfrog steps: about 3 s.
    return hmc(
        gaussian_log_prob, _init(4), n_samples=1000, n_warmup=300, n_leapfrog=8, generator=_gen(0)
    )


@pytest.fixture(scope="module")
def gaussian_metropolis() -> az.InferenceData:
    # One isotropic proposal scale for sds 1 and 10 mixes slowly (ESS ~ 1 in 150 draws), so many
    # draws: 32 chains cost about as much as 1 (one batched call per step), about 1 s in all.
    return metropolis(
        gaussian_log_prob, _init(32), n_samples=5000, n_warmup=1000, generator=_gen(0)
    )


def _logistic_model() -> tuple[BayesModel, torch.Tensor, torch.Tensor]:
    X, y = data.logistic_regression(100, 2, dtype=F64)
    net = nn.Linear(2, 1, bias=False, dtype=F64)
    return BayesModel(net, "bernoulli", prior_precision=1.0), X, y


@pytest.fixture(scope="module")
def logistic_hmc() -> az.InferenceData:
    # 8 chains x 150 draws cost little more than 4 chains (all chains are one vmapped batch).
    bm, X, y = _logistic_model()
    return hmc(
        log_prob_fn(bm, X, y),
        torch.zeros(8, 2, dtype=F64),
        n_samples=150,
        n_warmup=150,
        n_leapfrog=10,
        generator=_gen(0),
    )


def _moment_errors(theta: np.ndarray, mean: np.ndarray, cov: np.ndarray):
    """Errors of the sample mean and of the sample covariance about the true mean, in units of
    their Monte Carlo standard errors; theta has shape (chains, draws, P)."""
    z_mean = []
    for i in range(theta.shape[-1]):
        x = theta[..., i]
        se = x.std() / math.sqrt(az.ess(x, method="mean"))
        z_mean.append((x.mean() - mean[i]) / se)
    z_cov = []
    d = theta - mean
    for i in range(theta.shape[-1]):
        for j in range(i + 1):
            prod = d[..., i] * d[..., j]  # its mean estimates cov[i, j] without bias
            se = prod.std() / math.sqrt(az.ess(prod, method="mean"))
            z_cov.append((prod.mean() - cov[i, j]) / se)
    return np.abs(z_mean), np.abs(z_cov)


@pytest.mark.parametrize("run", ["gaussian_hmc", "gaussian_metropolis"])
def test_samplers_recover_a_correlated_gaussian(run, request):
    idata = request.getfixturevalue(run)
    z_mean, z_cov = _moment_errors(idata.posterior["theta"].values, MEAN.numpy(), COV.numpy())
    assert z_mean.max() < 5, z_mean
    assert z_cov.max() < 5, z_cov


def test_hmc_chains_mix(gaussian_hmc):
    """Rank R-hat below 1.01 (Vehtari et al. 2021's threshold) and bulk ESS above 1000 of the
    4000 draws: tuned HMC on a Gaussian gives nearly independent (here even antithetic) draws,
    9000 or more; the same run with ``adapt_mass=False`` gets 500-750, as the scales differ
    tenfold."""
    assert az.rhat(gaussian_hmc)["theta"].max() < 1.01
    assert az.ess(gaussian_hmc, method="bulk")["theta"].min() > 1000
    assert not gaussian_hmc.sample_stats["diverging"].any()


def test_hmc_matches_quadrature_on_logistic_regression(logistic_hmc):
    """The 2-D posterior's mean and covariance by a dense grid (error far below 1e-6 for a
    smooth density on +-8 sd) agree with HMC's within 5 Monte Carlo standard errors."""
    bm, X, y = _logistic_model()
    log_prob = log_prob_fn(bm, X, y)

    def moments(lo: torch.Tensor, hi: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        axes = [torch.linspace(lo[i].item(), hi[i].item(), n, dtype=F64) for i in range(2)]
        grid = torch.cartesian_prod(*axes)
        with torch.no_grad():
            w = torch.softmax(log_prob(grid), 0)
        mean = w @ grid
        d = grid - mean
        return mean, (w[:, None] * d).T @ d

    mean, cov = moments(torch.full((2,), -6.0), torch.full((2,), 6.0), 121)  # locate it
    sd = cov.diagonal().sqrt()
    mean, cov = moments(mean - 8 * sd, mean + 8 * sd, 201)
    z_mean, z_cov = _moment_errors(
        logistic_hmc.posterior["theta"].values, mean.numpy(), cov.numpy()
    )
    assert z_mean.max() < 5, z_mean
    assert z_cov.max() < 5, z_cov


@pytest.mark.parametrize(
    ("run", "target"),
    [("gaussian_hmc", 0.8), ("logistic_hmc", 0.8), ("gaussian_metropolis", 0.234)],
)
def test_adaptation_reaches_the_target_acceptance(run, target, request):
    """Warmup drives the mean acceptance probability toward the target. The frozen step size is
    the average of the adapted log step sizes, whose acceptance is a little higher than the
    average acceptance during warmup (0.82-0.86 measured for a target of 0.8), hence 0.1."""
    rate = request.getfixturevalue(run).sample_stats["acceptance_rate"].mean().item()
    assert abs(rate - target) < 0.1, rate


@pytest.mark.parametrize("sampler", ["hmc", "metropolis"])
def test_a_seeded_generator_makes_runs_reproducible(sampler):
    run = {"hmc": hmc, "metropolis": metropolis}[sampler]
    extra = {"n_leapfrog": 3} if sampler == "hmc" else {}

    def sample(seed: int) -> torch.Tensor:
        idata = run(
            gaussian_log_prob, _init(3), n_samples=10, n_warmup=10, generator=_gen(seed), **extra
        )
        return draws(idata)

    assert_close(sample(5), sample(5), rtol=0, atol=0)
    assert not torch.equal(sample(5), sample(6))


@pytest.mark.parametrize("sampler", ["hmc", "metropolis"])
def test_nan_log_density_is_a_rejection(sampler):
    """Outside the unit disc the log density is NaN; with huge steps every proposal lands there,
    so every move is rejected (acceptance 0, HMC flags a divergence) and the chains stay put."""

    def log_prob(theta: torch.Tensor) -> torch.Tensor:
        inside = theta.norm(dim=1) < 1
        return torch.where(inside, -0.5 * (theta**2).sum(1), torch.full_like(theta[:, 0], math.nan))

    init = torch.tensor([[0.1, 0.2], [-0.3, 0.0]])
    if sampler == "hmc":
        idata = hmc(log_prob, init, n_samples=10, n_warmup=0, step_size=100.0, n_leapfrog=3)
        assert idata.sample_stats["diverging"].all()
    else:
        idata = metropolis(log_prob, init, n_samples=10, n_warmup=0, scale=1e3)
    assert (idata.sample_stats["acceptance_rate"] == 0).all()
    assert_close(draws(idata), init.repeat_interleave(10, dim=0), rtol=0, atol=0)


def test_draws_flattens_chains_and_log_prob_fn_is_the_log_joint():
    bm, X, y = _logistic_model()
    log_prob = log_prob_fn(bm, X, y)
    thetas = torch.randn(5, 2)
    assert_close(log_prob(thetas), torch.stack([bm.log_joint(t, X, y) for t in thetas]))
    idata = hmc(log_prob, thetas[:3], n_samples=4, n_warmup=0, n_leapfrog=2)
    flat = draws(idata)
    assert flat.shape == (12, 2) and flat.dtype == torch.float64
    assert_close(flat[4:8], torch.as_tensor(idata.posterior["theta"].values[1]))
    assert idata.posterior["theta"].dims == ("chain", "draw", "theta_dim")
    with pytest.raises(ValueError, match="idata"):
        draws(az.from_dict(posterior={"w": np.zeros((1, 2))}))


def test_progress_bar(capsys):
    metropolis(gaussian_log_prob, _init(2), n_samples=5, n_warmup=5, progress=True)
    assert "Metropolis" in capsys.readouterr().err


def _nan_at_init(theta: torch.Tensor) -> torch.Tensor:
    return torch.full_like(theta[:, 0], math.nan) + theta.sum(1)


BAD_INPUTS = [
    ({"init": [[0.0, 0.0]]}, TypeError, "init"),
    ({"init": torch.zeros(2, 2, dtype=torch.long)}, TypeError, "init"),
    ({"init": torch.zeros(2)}, ValueError, "init"),
    ({"init": torch.zeros(2, 2, 1)}, ValueError, "init"),
    ({"init": torch.tensor([[0.0, math.nan]])}, ValueError, "init"),
    ({"n_samples": 0}, ValueError, "n_samples"),
    ({"n_samples": 10.0}, TypeError, "n_samples"),
    ({"n_warmup": -1}, ValueError, "n_warmup"),
    ({"target_accept": 0.0}, ValueError, "target_accept"),
    ({"target_accept": 1.0}, ValueError, "target_accept"),
    ({"target_accept": math.nan}, ValueError, "target_accept"),
    ({"generator": 0}, TypeError, "generator"),
    ({"log_prob": "gaussian"}, TypeError, "log_prob"),
    ({"log_prob": lambda t: t.sum()}, ValueError, "log_prob"),  # a scalar, not (C,)
    ({"log_prob": lambda t: -(t**2)}, ValueError, "log_prob"),  # (C, P), not (C,)
    ({"log_prob": _nan_at_init}, ValueError, "log_prob"),
]
HMC_ONLY = [
    ({"n_leapfrog": 0}, ValueError, "n_leapfrog"),
    ({"step_size": 0.0}, ValueError, "step_size"),
    ({"step_size": -0.1}, ValueError, "step_size"),
    ({"step_size": math.inf}, ValueError, "step_size"),
    ({"log_prob": lambda t: torch.zeros(t.shape[0])}, ValueError, "log_prob"),  # no gradient
]
METROPOLIS_ONLY = [
    ({"scale": 0.0}, ValueError, "scale"),
    ({"scale": math.nan}, ValueError, "scale"),
]


@pytest.mark.parametrize(
    ("sampler", "bad", "error", "name"),
    [("hmc", *case) for case in BAD_INPUTS + HMC_ONLY]
    + [("metropolis", *case) for case in BAD_INPUTS + METROPOLIS_ONLY],
)
def test_bad_inputs_raise_naming_the_argument(sampler, bad, error, name):
    run = {"hmc": hmc, "metropolis": metropolis}[sampler]
    kwargs = {
        "log_prob": gaussian_log_prob,
        "init": torch.zeros(2, 2),
        "n_samples": 10,
        "n_warmup": 10,
    } | bad
    with pytest.raises(error, match=name):
        run(kwargs.pop("log_prob"), kwargs.pop("init"), **kwargs)


def test_from_draws_round_trips_through_draws():
    chains = torch.randn(3, 5, 2)
    torch.testing.assert_close(mcmc.draws(mcmc.from_draws(chains)), chains.reshape(-1, 2))
    with pytest.raises(ValueError, match="theta"):
        mcmc.from_draws(torch.randn(5, 2))
