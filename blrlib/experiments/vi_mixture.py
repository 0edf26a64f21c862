"""Table 1's "(New)" row of Khan & Rue (2023): a mixture candidate with learned weights.

    from blrlib import experiments
    rec = experiments.run("vi_mixture", scale="ci")        # mixture vs one Gaussian, bimodal

A one-dimensional model with a bimodal posterior whose modes predict a new reading
differently (``SignModel``); quadrature on a grid gives the exact posterior, the log evidence
and the exact predictive, against which every candidate is scored. Sizes per scale are
declared at the top of ``vi_mixture``; the seeds vary the BLR's Monte Carlo draws and HMC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from blrlib import blr
from blrlib.experiments import protocol
from blrlib.experiments._registry import Scale, register
from blrlib.families import ExponentialFamily, Gaussian, LearnedGaussianMixture, Params
from blrlib.infer import mcmc
from blrlib.landscapes import grid_posterior

__all__ = ["STARTS", "SignModel", "fit_sign_model", "mc_elbo", "vi_mixture"]

F64 = torch.float64

STARTS = {"mixture": (-0.5, 0.5), "mixture_one_side": (0.5, 1.5)}
"""The initial component means: one each side of 0 (straddling the modes), or both on the
side of the heavier mode."""


@dataclass(frozen=True)
class SignModel:
    """Intensities fix |theta|, one noisy probe tilts its sign: a bimodal 1-D posterior.

    y_i ~ N(theta^2, sigma^2) for i = 1..n (intensities), u ~ N(theta, tau^2) (one linear
    probe), theta ~ N(0, s0^2). Calling the model gives -log p(y, u, theta) with every constant,
    so that exp(-loss) integrates to the evidence p(y, u); theta has shape (..., 1).
    """

    y: Tensor
    u: float
    sigma: float = 1.0
    tau: float = 2.0
    prior_scale: float = 2.0

    @classmethod
    def generate(cls, n: int = 8, *, theta: float = 1.0, seed: int = 5) -> SignModel:
        """n intensities and one probe reading from the model at ``theta`` (seeded)."""
        gen = torch.Generator().manual_seed(seed)
        y = theta**2 + torch.randn(n, generator=gen, dtype=F64)
        return cls(y, theta + 2.0 * float(torch.randn(1, generator=gen, dtype=F64)))

    def __call__(self, theta: Tensor) -> Tensor:
        t = theta[..., 0]
        nll = 0.5 * ((self.y - t.unsqueeze(-1) ** 2) / self.sigma).pow(2).sum(-1)
        nll = nll + 0.5 * ((self.u - t) / self.tau) ** 2 + 0.5 * (t / self.prior_scale) ** 2
        consts = len(self.y) * math.log(self.sigma) + math.log(self.tau * self.prior_scale)
        return nll + 0.5 * (len(self.y) + 2) * math.log(2 * math.pi) + consts


def mc_elbo(
    family: ExponentialFamily,
    lam: Params,
    loss,
    *,
    n_samples: int,
    generator: torch.Generator,
) -> tuple[float, float]:
    """ELBO = E_q[-loss - log q] by Monte Carlo (Eq 2 with the sign flipped) and its std error."""
    theta = family.sample(lam, n_samples, generator=generator)
    values = -(loss(theta) + family.log_prob(lam, theta))
    return float(values.mean()), float(values.std() / n_samples**0.5)


def fit_sign_model(
    model: SignModel,
    *,
    n_steps: int,
    generator: torch.Generator,
    starts: dict[str, tuple[float, float]] | None = None,
) -> dict[str, tuple[ExponentialFamily, Params]]:
    """The BLR with a single Gaussian (from N(0, 1)) and with two-component mixtures with
    learned weights, one per entry of ``starts`` (initial means, unit variances, equal weights;
    :data:`STARTS` by default)."""
    one = Gaussian(1, dtype=F64)
    mix = LearnedGaussianMixture(2, 1, dtype=F64)
    inits = {"gaussian": (one, one.natural_from_mean_precision(0.0, 1.0))}
    for name, means in (STARTS if starts is None else starts).items():
        m = torch.tensor(means, dtype=F64)[:, None]
        lam = mix.natural_from_mean_precision(m, torch.ones(2, 1, 1, dtype=F64), [0.5, 0.5])
        inits[name] = (mix, lam)
    out = {}
    for name, (family, lam) in inits.items():
        # Price's theorem by Stein's lemma (hessian="reparam", as in VON): no second derivatives
        lam = blr.run(
            family, lam, model, rho=0.1, n_steps=n_steps, estimator="mc", n_samples=16,
            hessian="reparam", generator=generator,
        )[-1]  # fmt: skip
        out[name] = (family, lam)
    return out


def _predictive(fam: ExponentialFamily, lam: Params, u: Tensor, tau: float) -> Tensor:
    """p(u* | data) = sum_k pi_k N(u* | m_k, v_k + tau^2) for a Gaussian or a mixture q."""
    mean, cov = fam.mean_cov(lam)
    mean, var = mean.reshape(-1), cov.reshape(-1)
    pi = fam.weights_of(lam) if isinstance(fam, LearnedGaussianMixture) else mean.new_ones(1)
    dist = torch.distributions.Normal(mean, (var + tau**2).sqrt())
    return (pi * dist.log_prob(u.unsqueeze(-1)).exp()).sum(-1)


def _mixture_seed(scale: Scale, seed: int) -> dict[str, Any]:
    """One seed of ``vi_mixture``: every candidate and HMC, scored against quadrature."""
    n_steps, n_chains, n_samples, n_warmup, n_mc = protocol.by_scale(
        scale, ci=(150, 32, 300, 150, 20_000), full=(600, 64, 2000, 1000, 200_000)
    )
    gen = torch.Generator().manual_seed(seed)
    model = SignModel.generate()
    grid, exact, log_z = grid_posterior(model, -4.0, 4.0)
    fits = fit_sign_model(model, n_steps=n_steps, generator=gen)
    idata = mcmc.hmc(  # many chains, started across both modes
        lambda t: -model(t), torch.linspace(-1.5, 1.5, n_chains, dtype=F64)[:, None],
        n_samples=n_samples, n_warmup=n_warmup, n_leapfrog=6, generator=gen,
    )  # fmt: skip
    draws, diag = mcmc.draws(idata), mcmc.diagnostics(idata)
    tau_star, u_grid = 0.5, torch.linspace(-3.0, 3.0, 121, dtype=F64)
    normal = torch.distributions.Normal
    pred = {
        "hmc": normal(draws[:, 0], tau_star).log_prob(u_grid[:, None]).exp().mean(1),
        "exact": torch.trapezoid(
            normal(grid, tau_star).log_prob(u_grid[:, None]).exp() * exact, grid, dim=-1
        ),
    }
    table: dict[str, dict[str, float]] = {}
    for name, (fam, lam) in fits.items():
        pred[name] = _predictive(fam, lam, u_grid, tau_star)
        elbo, se = mc_elbo(fam, lam, model, n_samples=n_mc, generator=gen)
        density = fam.log_prob(lam, grid[:, None]).exp()
        table[name] = {
            "elbo": elbo,
            "elbo_se": se,
            "kl": log_z - elbo,
            "mass_positive": float(torch.trapezoid(density * (grid > 0), grid)),
            "tv_exact": 0.5 * float(torch.trapezoid((density - exact).abs(), grid)),
        }
    table["hmc"] = {"mass_positive": float((draws > 0).double().mean())}
    table["exact"] = {"mass_positive": float(torch.trapezoid(exact * (grid > 0), grid))}
    for name, p in pred.items():
        table[name]["pred_error_exact"] = float((p - pred["exact"]).abs().max())
        table[name]["pred_error_hmc"] = float((p - pred["hmc"]).abs().max())
    densities = {k: f.log_prob(q, grid[:, None]).exp()[::20].tolist() for k, (f, q) in fits.items()}
    means = {k: f.mean_cov(q)[0].reshape(-1).tolist() for k, (f, q) in fits.items()}
    weights = {k: f.weights_of(q).tolist() for k, (f, q) in fits.items() if k != "gaussian"}
    return {
        "table": table, "log_evidence": log_z, "hmc": diag, "means": means,
        "weights": weights, "grid": grid[::20].tolist(), "exact": exact[::20].tolist(),
        "densities": densities, "hmc_draws": draws[:, 0].tolist(), "u_grid": u_grid.tolist(),
        "predictive": {k: v.tolist() for k, v in pred.items()},
    }  # fmt: skip


@register
def vi_mixture(
    *, scale: Scale, device: torch.device, seed: int = 0, n_seeds: int | None = None
) -> dict[str, Any]:
    """Table 1 "(New)": learned-weight mixtures (two starts) vs one Gaussian, bimodal posterior.

    Scores against the exact posterior and predictive by quadrature (KL = log evidence - ELBO,
    total variation, mass on theta > 0, largest predictive error); HMC is shown, not trusted.
    The curves are those of the first seed; ``per_seed`` and ``summary`` cover every seed.
    """
    seeds = protocol.seeds(scale, base=seed, n_seeds=n_seeds)
    runs = [_mixture_seed(scale, s) for s in protocol.progress(seeds, scale, "vi_mixture")]
    out = dict(runs[0])
    out["seeds"] = seeds
    fitted = [k for k in runs[0]["table"] if k not in ("hmc", "exact")]
    metrics = ("kl", "tv_exact", "mass_positive", "pred_error_exact")
    out["per_seed"] = {k: {m: [r["table"][k][m] for r in runs] for m in metrics} for k in fitted}
    out["summary"] = {
        f"{k}_{m}": protocol.summarise(out["per_seed"][k][m]) for k in fitted for m in metrics
    }
    return out
