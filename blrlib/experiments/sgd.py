"""The SGD chapter, part 1: constant SGD's stationary distribution on a known posterior.

The Ornstein-Uhlenbeck predictions of Mandt et al. (2017) against many parallel chains on
Bayesian linear regression: the stationary covariance, the KL-optimal learning rate and batch
size, the optimal preconditioners, iterate averaging and the Averaged Stochastic Gradient
Sampler (:func:`sgd_stationary`); SGLD, SGFS and momentum are in ``sgd_samplers``, on the
same problem. Every measured number comes with a Monte Carlo standard error: a jackknife over
blocks of chains, which are independent, so the autocorrelation within a chain needs no model.

from blrlib import experiments
record = experiments.run("sgd_stationary", scale="ci")
record["result"]["main"]["error_discrete"]   # relative error of the predicted covariance
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from blrlib import infer, sgd_bayes
from blrlib.experiments._registry import Scale, register
from blrlib.experiments.protocol import by_scale

__all__ = ["Problem", "jackknife", "regression", "sgd_stationary"]

F64 = torch.float64


@dataclass(frozen=True)
class Problem:
    """Bayesian linear regression with correlated features of unequal scales."""

    X: Tensor
    y: Tensor
    model: infer.BayesModel
    theta: Tensor  # the posterior mean (= MAP)
    A: Tensor  # Hessian of the mean loss
    C: Tensor  # single-example gradient noise covariance
    posterior: Tensor  # the exact posterior covariance (N A)^-1

    @property
    def n(self) -> int:
        return self.X.shape[0]

    def chains(self, k: int) -> Tensor:
        """k copies of the posterior mean, (k, P): where constant-SGD chains start."""
        return self.theta.expand(k, -1).clone()

    def kl_of(self, cov: Tensor) -> Tensor:
        """KL(N(theta*, cov) || the exact posterior)."""
        return sgd_bayes.gaussian_kl(self.theta, cov, self.theta, self.posterior)

    def exact(self, eps: float, batch_size: int, **kw: Any) -> Tensor:
        """The exact stationary covariance of minibatch SGD on this least-squares problem."""
        return sgd_bayes.least_squares_covariance(
            self.X, self.C, eps=eps, batch_size=batch_size, noise_precision=1.0,
            prior_precision=1.0, **kw,
        )  # fmt: skip


def regression(n: int, dim: int, *, seed: int, device: torch.device) -> Problem:
    """y = x^T theta + N(0, 1), x ~ N(0, D^1/2 R D^1/2) with scales D from 2 to 0.5 and
    correlation 0.6, prior N(0, I): the Hessian A is anisotropic and, the noise being
    homoscedastic, the gradient noise C is close to A (B B^T proportional to A)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    scales = torch.linspace(2.0, 0.5, dim, dtype=F64, device=device).sqrt()
    corr = 0.4 * torch.eye(dim, dtype=F64, device=device) + 0.6
    chol = torch.linalg.cholesky(scales[:, None] * corr * scales[None, :])
    X = torch.randn(n, dim, generator=gen, dtype=F64, device=device) @ chol.T
    truth = torch.randn(dim, generator=gen, dtype=F64, device=device)
    y = X @ truth + torch.randn(n, generator=gen, dtype=F64, device=device)
    model = infer.BayesModel(
        nn.Linear(dim, 1, bias=False, dtype=F64, device=device),
        "gaussian",
        prior_precision=1.0,
        noise_precision=1.0,
    )
    # unit noise and prior precision: the posterior mean (= MAP) solves (X^T X + I) theta = X^T y,
    # the mean loss has Hessian A = (X^T X + I) / N, and example n's gradient is
    # x_n (x_n^T theta - y_n) + theta / N, whose covariance is C (the theta / N part is common)
    eye = torch.eye(dim, dtype=F64, device=device)
    theta = torch.linalg.solve(X.T @ X + eye, X.T @ y)
    A = (X.T @ X + eye) / n
    C = sgd_bayes.gradient_noise_covariance((X @ theta - y)[:, None] * X)
    return Problem(X, y, model, theta, A, C, torch.linalg.inv(n * A))


def jackknife(
    fn: Callable[[list[Tensor]], Tensor], xs: Sequence[Tensor], *, blocks: int = 20
) -> tuple[Tensor, Tensor]:
    """``fn(xs)`` and its jackknife standard error over blocks of chains.

    Args:
        fn: maps a list of samples, each (T, K_g, P), to a tensor of any shape.
        xs: the samples of each group of chains, (T, K_g, P), chains independent.
        blocks: B; leave-one-out estimates drop the b-th of B equal blocks of every group.

    Returns:
        (value, se), se = sqrt((B - 1) / B * sum_b (v_b - mean v)^2), the same shape as value.
    """
    value = fn(list(xs))
    loo = []
    for b in range(blocks):
        kept = []
        for x in xs:
            k = x.shape[1]
            drop = torch.zeros(k, dtype=torch.bool, device=x.device)
            drop[b * k // blocks : (b + 1) * k // blocks] = True
            kept.append(x[:, ~drop])
        loo.append(fn(kept))
    loo_t = torch.stack(loo)
    se = ((blocks - 1) / blocks * (loo_t - loo_t.mean(0)).square().sum(0)).sqrt()
    return value, se


def _cov(x: Tensor) -> Tensor:
    return torch.cov(x.reshape(-1, x.shape[-1]).T)


def _rel(a: Tensor, b: Tensor) -> Tensor:
    return torch.linalg.norm(a - b) / torch.linalg.norm(b)


def _anisotropy(cov: Tensor) -> Tensor:
    ev = torch.linalg.eigvalsh(cov)
    return ev[-1] / ev[0]


def _sizes(scale: Scale) -> dict[str, int]:
    return by_scale(
        scale,
        ci={"n": 300, "dim": 2, "batch": 10, "main": 1000, "group": 200, "burn": 300,
            "kept": 300, "precond": 600, "precond_steps": 150},
        # full: about 13 us of CPU per chain and step at P = 10 (measured on 20 steps), so
        # run A (12000 chains, the padded batch sweep counted 1.25x) takes about 100 M chain-steps
        # in all with the averaging and preconditioned runs: 15-20 minutes on 2 cores. At
        # N = 2000 the slowest covariance mode at eps* / 2 relaxes in about 600 steps.
        full={"n": 2000, "dim": 10, "batch": 10, "main": 4000, "group": 800, "burn": 2500,
              "kept": 2500, "precond": 4000, "precond_steps": 1500},
    )  # fmt: skip


def _local_minimiser(x: Tensor, f: Tensor) -> Tensor:
    """Minimiser of a parabola in log x through the three points around the smallest f."""
    i = int(f.argmin().clamp(1, len(f) - 2))
    u, v = x[i - 1 : i + 2].log(), f[i - 1 : i + 2]
    a, b, _ = torch.linalg.solve(torch.stack([u**2, u, torch.ones_like(u)], 1), v)
    return (-b / (2 * a)).exp()


def _run_groups(
    prob: Problem, groups: list[tuple[float, int, int]], *, z: dict, gen: torch.Generator, **kw
) -> list[Tensor]:
    """One vectorised constant-SGD run of groups (eps, batch size, chains); samples per group."""
    eps = torch.cat([torch.full((k,), e, dtype=F64) for e, _, k in groups])
    sizes = torch.cat([torch.full((k,), s, dtype=torch.long) for _, s, k in groups])
    chains = sgd_bayes.run_chains(
        sgd_bayes.minibatch_loss(prob.model, prob.X, prob.y),
        prob.chains(len(eps)),
        n_data=prob.n,
        batch_size=sizes.to(prob.X.device),
        eps=eps.to(prob.X.device),
        n_steps=z["burn"] + z["kept"],
        burn_in=z["burn"],
        generator=gen,
        **kw,
    )
    return list(chains.samples.split([k for *_, k in groups], dim=1))


@register
def sgd_stationary(*, scale: Scale, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Results 1-3 and 5: constant SGD's covariance, eps* and S*, H*, averaging and ASGS."""
    z = _sizes(scale)
    prob = regression(z["n"], z["dim"], seed=seed, device=device)
    S, N = z["batch"], prob.n
    eps = sgd_bayes.optimal_learning_rate(prob.C, batch_size=S, n_data=N)
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    factors = [0.5, 0.7071, 1.0, 1.4142, 2.0]
    sizes = [round(S * f) for f in factors]
    groups = [(eps, S, z["main"])] + [(eps * f, S, z["group"]) for f in factors]
    groups += [(eps, s, z["group"]) for s in sizes]
    xs = _run_groups(prob, groups, z=z, gen=gen, thin=10)  # ten steps apart
    out: dict[str, Any] = {
        "eps_star": eps,
        "eps_lambda_max": eps * float(torch.linalg.eigvalsh(prob.A)[-1]),
        "theta": prob.theta.tolist(),
        "posterior": prob.posterior.tolist(),
        "main": _main(prob, xs[0], eps, S),
        "sweeps": _sweeps(prob, xs[1:], eps, S, factors, sizes),
    }
    out["preconditioned"] = _preconditioned(prob, eps, S, z, gen)
    out.update(_averaging(prob, eps, S, z, gen))
    return out


def _main(prob: Problem, x: Tensor, eps: float, S: int) -> dict[str, Any]:
    """Result 1: the iterates' covariance against the three predictions.

    ``continuous``: the Ornstein-Uhlenbeck process; ``discrete``: the SGD recursion with
    additive noise; ``exact``: the recursion with the minibatch's multiplicative noise too.
    """
    pred = {
        "continuous": sgd_bayes.stationary_covariance(prob.A, prob.C, eps=eps, batch_size=S),
        "discrete": sgd_bayes.stationary_covariance(
            prob.A, prob.C, eps=eps, batch_size=S, discrete=True
        ),
        "exact": prob.exact(eps, S),
    }
    # the trace of the continuous Lyapunov equation: tr(A Sigma) = eps tr C / (2 S) exactly
    cont_trace = eps * float(prob.C.trace()) / (2 * S)
    names = list(pred)

    def stats(xs: list[Tensor]) -> Tensor:
        c = _cov(xs[0])
        errors = [_rel(c, pred[k]) for k in names]
        return torch.stack([*errors, _anisotropy(c), torch.trace(prob.A @ c) / cont_trace])

    value, se = jackknife(stats, [x])
    cov, cov_se = jackknife(lambda xs: _cov(xs[0]), [x])
    kl, kl_se = jackknife(lambda xs: prob.kl_of(_cov(xs[0])), [x])
    return {
        "empirical": cov.tolist(),
        **{k: v.tolist() for k, v in pred.items()},
        **{f"error_{k}": float(value[i]) for i, k in enumerate(names)},
        # the size of the Monte Carlo error of the empirical covariance, relative
        "noise": float(torch.linalg.norm(cov_se) / torch.linalg.norm(pred["exact"])),
        "anisotropy": {
            "empirical": float(value[3]),
            "se": float(se[3]),
            **{k: float(_anisotropy(v)) for k, v in pred.items()},
            "posterior": float(_anisotropy(prob.posterior)),
        },
        "trace_ratio": {
            "empirical": float(value[4]),
            "se": float(se[4]),
            **{k: float(torch.trace(prob.A @ v) / cont_trace) for k, v in pred.items()},
        },
        "kl_empirical": float(kl),
        "kl_se": float(kl_se),
        "kl_predicted": float(prob.kl_of(pred["exact"])),
        "scatter": x[-1, :500].tolist(),
    }


def _sweeps(
    prob: Problem, xs: list[Tensor], eps: float, S: int, factors: list[float], sizes: list[int]
) -> dict[str, Any]:
    """Result 2: KL(stationary || posterior) against the learning rate and the batch size."""
    n = len(factors)
    out: dict[str, Any] = {}
    for axis, samples in (("eps", xs[:n]), ("batch", xs[n:])):
        grid = torch.tensor(
            [eps * f for f in factors] if axis == "eps" else [float(s) for s in sizes],
            dtype=F64,
            device=prob.X.device,
        )

        def stats(xs: list[Tensor], grid: Tensor = grid) -> Tensor:
            kl = torch.stack([prob.kl_of(_cov(x)) for x in xs])
            return torch.cat([kl, _local_minimiser(grid, kl)[None]])

        value, se = jackknife(stats, samples)
        predicted = torch.stack([
            prob.kl_of(prob.exact(float(g), S) if axis == "eps" else prob.exact(eps, int(g)))
            for g in grid
        ])  # fmt: skip
        out[axis] = {
            "grid": grid.tolist(),
            "kl_empirical": value[:-1].tolist(),
            "kl_se": se[:-1].tolist(),
            "kl_predicted": predicted.tolist(),
            "empirical_minimiser": float(value[-1]),
            "minimiser_se": float(se[-1]),
            "predicted_minimiser": float(_local_minimiser(grid, predicted)),
        }
    # at fixed eps = eps*(S), the KL-optimal batch size is S itself: S* = eps N tr C / (2 P)
    out["batch_star"] = eps * prob.n * float(prob.C.trace()) / (2 * prob.X.shape[1])
    return out


def _preconditioned(
    prob: Problem, eps: float, S: int, z: dict, gen: torch.Generator
) -> dict[str, Any]:
    """Result 3: the diagonal and the full optimal preconditioner at eps*."""
    out: dict[str, Any] = {}
    for name, diagonal in (("diagonal", True), ("full", False)):
        H = sgd_bayes.optimal_preconditioner(
            prob.C, batch_size=S, eps=eps, n_data=prob.n, diagonal=diagonal
        )
        steps = z["precond_steps"]
        chains = sgd_bayes.run_chains(
            sgd_bayes.minibatch_loss(prob.model, prob.X, prob.y),
            prob.chains(z["precond"]),
            n_data=prob.n,
            batch_size=S,
            eps=eps,
            n_steps=steps,
            burn_in=steps // 3,  # K A is about (2 S / N) I: the chains mix in ~N / (4 S) steps
            preconditioner=H,
            thin=10,
            generator=gen,
        )
        x = chains.samples
        pred = prob.exact(eps, S, preconditioner=H)
        kl, kl_se = jackknife(lambda xs: prob.kl_of(_cov(xs[0])), [x])
        out[name] = {
            "empirical": _cov(x).tolist(),
            "kl_empirical": float(kl),
            "kl_se": float(kl_se),
            "kl_predicted": float(prob.kl_of(pred)),
            "kl_continuous": float(prob.kl_of(sgd_bayes.stationary_covariance(
                prob.A, prob.C, eps=eps, batch_size=S, preconditioner=H
            ))),
            "scatter": x[-1, :500].tolist(),
        }  # fmt: skip
    return out


def _averaging(prob: Problem, eps: float, S: int, z: dict, gen: torch.Generator) -> dict[str, Any]:
    """Result 5: Polyak averages of constant SGD, and the Averaged Stochastic Gradient Sampler.

    One run with windows of T0 = N / S iterations (one epoch): the Polyak average over T = k T0
    iterates is the mean of k consecutive windows, and each window mean is one ASGS draw.
    """
    T0 = prob.n // S
    lam_max = float(torch.linalg.eigvalsh(prob.A)[-1])
    asgs_eps = 1 / lam_max  # half the stability limit 2 / lambda_max: T0 eps lambda_min >> 1
    factors = [1.0, 2.0, 4.0]
    groups = [(eps * f, S, z["group"]) for f in factors] + [(asgs_eps, S, 3 * z["group"] // 2)]
    *polyak, asgs = _run_groups(prob, groups, z=z, gen=gen, window=T0)
    k = polyak[0].shape[0]
    count = torch.arange(1, k + 1, dtype=F64, device=prob.X.device)
    T = T0 * count

    def error(xs: list[Tensor]) -> Tensor:
        running = xs[0].cumsum(0) / count[:, None, None]
        return (running - prob.theta).square().sum(-1).mean(-1)

    errors = [jackknife(error, [x]) for x in polyak]
    exact = [
        [
            float(torch.trace(sgd_bayes.window_covariance(
                prob.A, prob.C, eps=eps * f, batch_size=S, window=int(t),
                stationary=prob.exact(eps * f, S),
            )))
            for t in T
        ]
        for f in factors
    ]  # fmt: skip
    asymptote = [
        float(
            torch.trace(sgd_bayes.polyak_covariance(prob.A, prob.C, batch_size=S, n_steps=int(t)))
        )
        for t in T
    ]
    pred = sgd_bayes.window_covariance(
        prob.A, prob.C, eps=asgs_eps, batch_size=S, window=T0,
        stationary=prob.exact(asgs_eps, S),
    )  # fmt: skip

    def stats(xs: list[Tensor]) -> Tensor:
        c = _cov(xs[0])
        return torch.stack([_rel(c, pred), prob.kl_of(c), _anisotropy(c)])

    value, se = jackknife(stats, [asgs])
    _, cov_se = jackknife(lambda xs: _cov(xs[0]), [asgs])
    sgd_cov = prob.exact(eps, S)
    return {
        "polyak": {
            "factors": factors,
            "T": T.tolist(),
            "error": [e.tolist() for e, _ in errors],
            "error_se": [s.tolist() for _, s in errors],
            "exact": exact,
            "asymptote": asymptote,
            "eps_lambda_min_T": [
                eps * f * float(torch.linalg.eigvalsh(prob.A)[0]) * float(T[-1]) for f in factors
            ],
        },
        "asgs": {
            "eps": asgs_eps,
            "window": T0,
            "empirical": _cov(asgs).tolist(),
            "predicted": pred.tolist(),
            "asymptote": sgd_bayes.polyak_covariance(
                prob.A, prob.C, batch_size=S, n_steps=T0
            ).tolist(),
            "error": float(value[0]),
            "noise": float(torch.linalg.norm(cov_se) / torch.linalg.norm(pred)),
            "kl_empirical": float(value[1]),
            "kl_se": float(se[1]),
            "kl_predicted": float(prob.kl_of(pred)),
            "kl_sgd": float(prob.kl_of(sgd_cov)),
            "anisotropy": float(value[2]),
            "anisotropy_se": float(se[2]),
            "scatter": asgs[:, :50].reshape(-1, asgs.shape[-1])[:500].tolist(),
        },
    }
