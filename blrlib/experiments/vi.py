"""Sec 5.3-5.4 of Khan & Rue (2023): VMP, SVI and non-conjugate VI against their references.

    from blrlib import experiments
    rec = experiments.run("vi_svi", scale="ci")            # ELBO vs passes, VMP and SVI
    rec = experiments.run("vi_logistic", scale="ci")       # NC-VI vs exact VI, Laplace, HMC
    rec = experiments.run("vi_gp", scale="ci")             # GP classification vs sklearn, HMC
    rec = experiments.run("vi_mixture", scale="ci")        # mixture vs one Gaussian, bimodal

Each returns plain lists and floats (JSON). At full scale: more data, all features, longer
HMC chains and more seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from blrlib import blr, data, infer, metrics, ncvi, vmp
from blrlib import linear_gaussian as lg
from blrlib.experiments._registry import Scale, register
from blrlib.experiments.conjugate_em import gmm_blobs
from blrlib.families import ExponentialFamily, Gaussian, LearnedGaussianMixture, Params
from blrlib.infer import mcmc
from blrlib.landscapes import grid_posterior

__all__ = [
    "SignModel",
    "fit_sign_model",
    "gp_problem",
    "logistic_problem",
    "mc_elbo",
    "vi_gp",
    "vi_logistic",
    "vi_mixture",
    "vi_svi",
]

F64 = torch.float64


@register
def vi_svi(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """ELBO against passes over the data: VMP and SVI at several minibatch sizes."""
    ci = scale is Scale.CI
    n = 2000 if ci else 100_000
    y = gmm_blobs(n, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    model = vmp.BayesianGMM(n_components=5, dim=2, alpha0=0.1, beta0=1.0, nu0=2.0)
    resp0 = torch.distributions.Dirichlet(torch.ones(5, dtype=F64)).sample((n,))
    n_passes = 5 if ci else 20
    ref = vmp.run_vmp(model, y, resp0, n_iter=n_passes)
    out: dict[str, Any] = {"n": n, "vmp": {"passes": list(range(n_passes + 1))}}
    out["vmp"]["elbo"] = ref["elbo"]
    for batch in (50, 500) if ci else (100, 1000, 10_000):
        run = vmp.run_svi(
            model,
            y,
            resp0,
            n_passes=n_passes,
            batch_size=batch,
            kappa=0.7,
            evals_per_pass=4,
            generator=gen,
        )
        out[f"svi_{batch}"] = {"passes": run["passes"], "elbo": run["elbo"]}
    return out


def logistic_problem(scale: Scale, seed: int = 0):
    """Breast cancer with a bias column: (X_train, y_train, X_test, y_test); ci: 6 features."""
    X, y = data.breast_cancer(dtype=F64)
    if scale is Scale.CI:
        X = X[:, :6]
    X = torch.cat((X, torch.ones(len(X), 1, dtype=F64)), dim=1)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    train, test = perm[:300], perm[300:]
    return X[train], y[train], X[test], y[test]


def _hmc_draws(log_prob, init: Tensor, *, ci: bool, gen: torch.Generator) -> tuple[Tensor, dict]:
    idata = mcmc.hmc(
        log_prob,
        init,
        n_samples=300 if ci else 5000,
        n_warmup=200 if ci else 2000,
        n_leapfrog=8 if ci else 30,
        generator=gen,
    )
    return mcmc.draws(idata), mcmc.diagnostics(idata)


def _scores(mean: Tensor, cov: Tensor, ref_mean: Tensor, ref_cov: Tensor) -> dict[str, float]:
    return {
        "mean_error": float((mean - ref_mean).norm() / ref_mean.norm()),
        "cov_error": float((cov - ref_cov).norm() / ref_cov.norm()),
    }


@register
def vi_logistic(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """NC-VI (Eq 58, 60) for logistic regression vs exact Gaussian VI, Laplace and HMC."""
    ci = scale is Scale.CI
    gen = torch.Generator().manual_seed(seed)
    Xtr, ytr, Xte, yte = logistic_problem(scale, seed)
    p, delta = Xtr.shape[1], 1.0
    q = Gaussian(p, dtype=F64)
    prior = q.natural_from_moments(torch.zeros(p, dtype=F64), delta * torch.eye(p, dtype=F64))
    factors = ncvi.LogisticFactors(Xtr, ytr)
    path = ncvi.run(q, prior, factors, rho=1.0, n_iter=25, form="local")
    approx = {
        "blr": path["lam"][-1],
        "exact_vi": ncvi.gaussian_vi_optimum(q, prior, factors, max_iter=200),
    }
    bm = infer.BayesModel(
        nn.Linear(p, 1, bias=False, dtype=F64), "bernoulli", prior_precision=delta
    )
    theta_map = infer.fit_map(bm, Xtr, ytr)
    lap = infer.laplace(bm, Xtr, ytr, theta_map)
    moments = {k: q.mean_cov(lam) for k, lam in approx.items()}
    moments["laplace"] = (lap.mean, lap.cov)

    def log_prob(w: Tensor) -> Tensor:  # log p(y, w), batched over chains (C, P)
        f = w @ Xtr.T
        return (ytr * f - nn.functional.softplus(f)).sum(-1) - 0.5 * delta * (w**2).sum(-1)

    draws, diag = _hmc_draws(log_prob, theta_map.expand(8, -1).clone(), ci=ci, gen=gen)
    ref_mean, ref_cov = draws.mean(0), torch.cov(draws.T)
    probs = {"hmc": torch.sigmoid(draws @ Xte.T).mean(0)}
    for name, (m, cov) in moments.items():
        probs[name] = ncvi.predictive_probability(Xte @ m, ((Xte @ cov) * Xte).sum(-1))
    table = {k: _scores(m, c, ref_mean, ref_cov) for k, (m, c) in moments.items()}
    for name, prob in probs.items():
        table.setdefault(name, {})["test_nll"] = metrics.nll(prob, yte)
    sites = path["sites"]
    return {
        "table": table,
        "hmc": diag,
        "elbo": {k: float(ncvi.elbo(q, lam, prior, factors)) for k, lam in approx.items()},
        "blr_elbo_path": [float(ncvi.elbo(q, lam, prior, factors)) for lam in path["lam"]],
        "blr_vs_exact": max(
            float((a - b).abs().max())
            for a, b in zip(moments["blr"], moments["exact_vi"], strict=True)
        ),
        # each site exp(<lam_i, T(w)>) = exp(alpha_i a + beta_i a^2) with a = x_i^T w
        "site_alpha": ((sites[0] * Xtr).sum(-1) / (Xtr**2).sum(-1)).tolist(),
        "site_beta": (
            torch.einsum("np,npq,nq->n", Xtr, sites[1], Xtr) / (Xtr**2).sum(-1) ** 2
        ).tolist(),
        "site_mean_a": (Xtr @ moments["blr"][0]).tolist(),
        "y_train": ytr.tolist(),
    }


def gp_problem(kind: str, n: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """(X (n, D), y (n,), X_test): "1d" a noisy sine of labels, "2d" two moons."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "1d":
        x = torch.rand(n, 1, generator=gen, dtype=F64) * 6 - 3
        y = torch.bernoulli(torch.sigmoid(3 * torch.sin(1.5 * x[:, 0])), generator=gen)
        return x, y, torch.linspace(-3.5, 3.5, 60, dtype=F64)[:, None]
    X, y = data.two_moons(n, noise=0.25, seed=seed, dtype=F64)
    g = torch.linspace(-2.0, 3.0, 20, dtype=F64)
    return X, y, torch.cartesian_prod(g, g - 0.5)


@register
def vi_gp(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """GP classification by the same site updates vs sklearn's GPC (Laplace) and HMC."""
    from sklearn.gaussian_process import GaussianProcessClassifier
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel

    ci = scale is Scale.CI
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, Any] = {}
    for kind, ell, var in (("1d", 1.0, 4.0), ("2d", 0.7, 4.0)):
        X, y, Xs = gp_problem(kind, 30 if ci else 200, seed)
        n = len(X)
        K = lg.kernel(X, X, length_scale=ell, variance=var) + 1e-8 * torch.eye(n, dtype=F64)
        q = Gaussian(n, dtype=F64)
        chol = torch.linalg.cholesky(K)
        prior = q.natural_from_moments(torch.zeros(n, dtype=F64), torch.cholesky_inverse(chol))
        factors = ncvi.LogisticFactors(torch.eye(n, dtype=F64), y)
        lam = ncvi.run(q, prior, factors, rho=1.0, n_iter=30, form="local")["lam"][-1]
        kx = lg.kernel(X, Xs, length_scale=ell, variance=var)
        mean, v = ncvi.gp_predictive(q, lam, K, kx, torch.full((len(Xs),), var, dtype=F64))
        probs = {"blr": ncvi.predictive_probability(mean, v)}
        kernel = ConstantKernel(var, "fixed") * RBF(ell, "fixed")
        gpc = GaussianProcessClassifier(kernel, optimizer=None).fit(X.numpy(), y.numpy())
        probs["sklearn"] = torch.as_tensor(gpc.predict_proba(Xs.numpy())[:, 1])

        def log_prob(v: Tensor, chol: Tensor = chol, y: Tensor = y) -> Tensor:
            f = v @ chol.T  # whitened: f = L v, v ~ N(0, I)
            return (y * f - nn.functional.softplus(f)).sum(-1) - 0.5 * (v**2).sum(-1)

        draws, diag = _hmc_draws(log_prob, torch.zeros(8, n, dtype=F64), ci=ci, gen=gen)
        f_train = draws @ chol.T
        alpha = torch.linalg.solve(K, kx)  # E[f* | f] = k*^T K^-1 f; f* | f adds variance
        cond_var = var - (kx * alpha).sum(0)
        probs["hmc"] = ncvi.predictive_probability(f_train @ alpha, cond_var.expand(len(draws), -1))
        probs["hmc"] = probs["hmc"].mean(0)
        out[kind] = {
            "x_test": Xs.tolist(),
            "probs": {k: p.tolist() for k, p in probs.items()},
            "max_error": {k: float((p - probs["hmc"]).abs().max()) for k, p in probs.items()},
            "mean_error": {k: float((p - probs["hmc"]).abs().mean()) for k, p in probs.items()},
            "hmc": diag,
            "x": X.tolist(),
            "y": y.tolist(),
        }
    return out


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
    model: SignModel, *, n_steps: int, generator: torch.Generator
) -> dict[str, tuple[ExponentialFamily, Params]]:
    """The BLR with a single Gaussian and with a two-component mixture with learned weights."""
    one = Gaussian(1, dtype=F64)
    mix = LearnedGaussianMixture(2, 1, dtype=F64)
    starts = {
        "gaussian": (one, one.natural_from_moments(torch.zeros(1, dtype=F64), torch.eye(1))),
        "mixture": (
            mix,
            mix.natural_from_moments(
                torch.tensor([[-0.5], [0.5]], dtype=F64), torch.ones(2, 1, 1, dtype=F64), [0.5, 0.5]
            ),
        ),
    }
    out = {}
    for name, (family, lam) in starts.items():
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


@register
def vi_mixture(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Table 1 "(New)": a learned-weight mixture vs one Gaussian on a bimodal posterior."""
    ci = scale is Scale.CI
    gen = torch.Generator().manual_seed(seed)
    model = SignModel.generate()
    grid, exact, log_z = grid_posterior(model, -4.0, 4.0)
    fits = fit_sign_model(model, n_steps=150 if ci else 600, generator=gen)
    n_chains = 32 if ci else 128  # many chains, started across both modes, which they cross
    idata = mcmc.hmc(
        lambda t: -model(t),
        torch.linspace(-1.5, 1.5, n_chains, dtype=F64)[:, None],
        n_samples=300 if ci else 5000,
        n_warmup=150 if ci else 1000,
        n_leapfrog=6,
        generator=gen,
    )
    draws, diag = mcmc.draws(idata), mcmc.diagnostics(idata)
    tau_star, u_grid = 0.5, torch.linspace(-3.0, 3.0, 121, dtype=F64)

    def hmc_pred(u: Tensor) -> Tensor:
        return torch.distributions.Normal(draws[:, 0], tau_star).log_prob(u[:, None]).exp().mean(1)

    def exact_pred(u: Tensor) -> Tensor:
        dens = torch.distributions.Normal(grid, tau_star).log_prob(u[:, None]).exp() * exact
        return torch.trapezoid(dens, grid, dim=-1)

    pred = {"hmc": hmc_pred(u_grid), "exact": exact_pred(u_grid)}
    table: dict[str, dict[str, float]] = {}
    for name, (fam, lam) in fits.items():
        pred[name] = _predictive(fam, lam, u_grid, tau_star)
        elbo, se = mc_elbo(fam, lam, model, n_samples=20_000 if ci else 200_000, generator=gen)
        density = fam.log_prob(lam, grid[:, None]).exp()
        table[name] = {
            "elbo": elbo,
            "elbo_se": se,
            "kl": log_z - elbo,
            "mass_positive": float(torch.trapezoid(density * (grid > 0), grid)),
            "tv_exact": 0.5 * float(torch.trapezoid((density - exact).abs(), grid)),
        }
    for name in ("hmc", "exact"):
        table[name] = {}
    table["hmc"]["mass_positive"] = float((draws > 0).double().mean())
    table["exact"]["mass_positive"] = float(torch.trapezoid(exact * (grid > 0), grid))
    for name, p in pred.items():
        table[name]["pred_error_hmc"] = float((p - pred["hmc"]).abs().max())
        table[name]["pred_error_exact"] = float((p - pred["exact"]).abs().max())
    fam, lam = fits["mixture"]
    densities = {k: f.log_prob(q, grid[:, None]).exp().tolist() for k, (f, q) in fits.items()}
    return {
        "table": table,
        "log_evidence": log_z,
        "hmc": diag,
        "mixture_means": fam.mean_cov(lam)[0].reshape(-1).tolist(),
        "mixture_weights": fam.weights_of(lam).tolist(),
        "gaussian_mean": fits["gaussian"][0].mean_cov(fits["gaussian"][1])[0].tolist(),
        "grid": grid[::20].tolist(),
        "exact": exact[::20].tolist(),
        "densities": {k: v[::20] for k, v in densities.items()},
        "hmc_draws": draws[:, 0].tolist(),
        "u_grid": u_grid.tolist(),
        "predictive": {k: v.tolist() for k, v in pred.items()},
    }
