"""Ground-truth posteriors for small models: HMC and random-walk Metropolis, several chains at once.

    from blrlib import infer
    log_prob = infer.log_prob_fn(bm, X, y)   # thetas (C, P) -> log p(y, theta | X), shape (C,)
    idata = infer.hmc(log_prob, torch.zeros(4, bm.dim), n_samples=1000, n_warmup=500)
    arviz.summary(idata)                     # R-hat, bulk and tail ESS, MCSE per coordinate
    thetas = infer.draws(idata)              # (4 * 1000, P), e.g. for a Monte Carlo predictive

Both samplers run C chains as one batch: every call of ``log_prob`` sees all chains, shape (C, P),
and each chain adapts its own step size (and mass matrix) during warmup, which is then frozen so
that the kept draws come from a valid Markov chain. Draws go into preallocated (C, S, P) buffers
and come back as ``arviz.InferenceData``, so that R-hat and ESS are one ``arviz`` call away.

Used in :ref:`primer-hmc`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from blrlib import _checks

if TYPE_CHECKING:
    import arviz

    from blrlib.infer.model import BayesModel

__all__ = ["diagnostics", "draws", "from_draws", "hmc", "log_prob_fn", "metropolis"]

LogProb = Callable[[Tensor], Tensor]

# Dual averaging constants of Hoffman & Gelman (2014, Sec 3.2), except gamma: their 0.05 (tuned
# for NUTS) lets static HMC's step sizes swing across the cliff where small models' acceptance
# drops from ~1 to ~0, and the averaged step lands well below the target one (mean acceptance
# 0.94 for a target of 0.8 on a 2-D logistic regression); 0.2 damps the swings (0.85).
_GAMMA, _T0, _KAPPA = 0.2, 10.0, 0.75
# A trajectory whose energy grows by more than this is divergent (Stan's threshold).
_MAX_ENERGY_ERROR = 1000.0
# Each iteration's step size is eps * U(1 - j, 1 + j) (Neal 2011, Sec 5.4.2.2), so that a fixed
# number of leapfrog steps cannot keep hitting a half-period of the dynamics, which maps theta to
# about -theta: great for the mean, but the variance never mixes (R-hat 1.05 on a 2-D Gaussian).
_JITTER = 0.2


def _arviz() -> Any:
    """Import arviz lazily, hiding the FutureWarning about its refactor that 0.23 prints."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing", category=FutureWarning)
        import arviz
    return arviz


def log_prob_fn(bm: BayesModel, X: Tensor, y: Tensor) -> LogProb:
    """The batched log joint density of a :class:`~blrlib.infer.BayesModel`, for the samplers.

    Args:
        bm: the model, likelihood and Gaussian prior.
        X: inputs (N, ...).
        y: targets (N,).

    Returns:
        A function mapping thetas (C, P) to log p(y, theta_c | X), shape (C,).
    """
    return torch.vmap(lambda theta: bm.log_joint(theta, X, y))


def _probability(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float in (0, 1); got {type(value).__name__}")
    if not 0 < value < 1:  # also rejects NaN
        raise ValueError(f"{name} must be in (0, 1); got {value!r}")
    return float(value)


def _check_init(init: object, generator: object) -> Tensor:
    if not isinstance(init, Tensor) or not init.is_floating_point():
        raise TypeError(f"init must be a floating-point tensor of shape (C, P); got {init!r:.80}")
    if init.dim() != 2 or init.numel() == 0:
        raise ValueError(f"init must have shape (C, P) with C, P >= 1; got {tuple(init.shape)}")
    if not torch.isfinite(init).all():
        raise ValueError("init must be finite")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None; got {type(generator)}")
    return init.detach().clone()


def _value_and_grad(log_prob: LogProb, theta: Tensor) -> tuple[Tensor, Tensor]:
    """log_prob at theta (C, P) and its gradient (C, P), detached: one backward pass serves all
    chains, since chain c's log density depends on theta_c only."""
    theta = theta.detach().requires_grad_(True)
    with torch.enable_grad():
        lp = log_prob(theta)
        _check_shape(lp, theta)
        if not lp.requires_grad:
            raise ValueError("log_prob must be differentiable in theta for HMC")
        (grad,) = torch.autograd.grad(lp.sum(), theta)
    return lp.detach(), grad


def _value(log_prob: LogProb, theta: Tensor) -> Tensor:
    with torch.no_grad():
        lp = log_prob(theta)
    _check_shape(lp, theta)
    return lp


def _check_shape(lp: object, theta: Tensor) -> None:
    if not isinstance(lp, Tensor) or lp.shape != theta.shape[:1]:
        got = tuple(lp.shape) if isinstance(lp, Tensor) else type(lp).__name__
        raise ValueError(
            f"log_prob must map thetas {tuple(theta.shape)} to shape ({theta.shape[0]},); got {got}"
        )


def _check_finite(lp: Tensor, grad: Tensor | None = None) -> None:
    if not torch.isfinite(lp).all() or (grad is not None and not torch.isfinite(grad).all()):
        raise ValueError("log_prob: its value or gradient at init is not finite; start elsewhere")


def _accept_prob(log_ratio: Tensor) -> Tensor:
    """min(1, exp(log_ratio)), with NaN (e.g. an overflowing energy) counted as 0."""
    alpha = torch.exp(log_ratio.clamp(max=0.0))
    return torch.where(torch.isnan(alpha), torch.zeros_like(alpha), alpha)


def from_draws(theta: Tensor) -> arviz.InferenceData:
    """ArviZ InferenceData from stored draws of shape (chains, draws, P), e.g. a saved run."""
    if not isinstance(theta, Tensor) or theta.dim() != 3:
        raise ValueError(
            f"theta must be a tensor (chains, draws, P); got {getattr(theta, 'shape', theta)}"
        )
    return _inference_data(theta, {})


def _inference_data(theta: Tensor, stats: dict[str, Tensor]) -> arviz.InferenceData:
    return _arviz().from_dict(
        posterior={"theta": theta.cpu().numpy()},
        sample_stats={k: v.cpu().numpy() for k, v in stats.items()},
        dims={"theta": ["theta_dim"]},
    )


class _DualAveraging:
    """Step-size adaptation of Hoffman & Gelman (2014, Alg 5), one step size per chain."""

    def __init__(self, eps: Tensor, target: float) -> None:
        self.target = target
        self.restart(eps)

    def restart(self, eps: Tensor) -> None:
        self.mu = torch.log(10 * eps)  # bias log eps toward larger steps
        self.h_bar = torch.zeros_like(eps)
        self.log_eps_bar = torch.zeros_like(eps)
        self.m = 0

    def update(self, alpha: Tensor) -> Tensor:
        """Record the acceptance probabilities (C,); return the next step sizes (C,)."""
        self.m += 1
        eta = 1.0 / (self.m + _T0)
        self.h_bar = (1 - eta) * self.h_bar + eta * (self.target - alpha)
        log_eps = self.mu - math.sqrt(self.m) / _GAMMA * self.h_bar
        w = self.m**-_KAPPA
        self.log_eps_bar = w * log_eps + (1 - w) * self.log_eps_bar
        return torch.exp(log_eps)

    def final(self) -> Tensor:
        """The averaged step sizes exp(log eps-bar), to be used after warmup."""
        return torch.exp(self.log_eps_bar)


def hmc(
    log_prob: LogProb,
    init: Tensor,
    *,
    n_samples: int,
    n_warmup: int,
    step_size: float = 0.1,
    n_leapfrog: int = 20,
    target_accept: float = 0.8,
    adapt_mass: bool = True,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> arviz.InferenceData:
    """Hamiltonian Monte Carlo with a diagonal mass matrix, one chain per row of ``init``.

    Each iteration draws a momentum r ~ N(0, M), takes ``n_leapfrog`` leapfrog steps of size eps
    on H(theta, r) = -log_prob(theta) + r^T M^-1 r / 2 and accepts the end point with
    probability min(1, exp(H_0 - H_1)); a NaN energy is a rejection, and an energy error above
    1000 is also flagged as divergent. Warmup, per chain:

    * all of it: dual averaging of log eps toward ``target_accept`` (Hoffman & Gelman 2014,
      Alg 5, with gamma = 0.2 instead of 0.05, see ``_GAMMA``), restarted when M changes;
    * if ``adapt_mass``: iterations [W/2, 4W/5) estimate each coordinate's posterior variance,
      which becomes M^-1 (shrunk toward 1e-3 as Stan does); the last W/5 re-tune eps for it.
      This is Stan's windowed adaptation reduced to one window (at least 10 draws, else M = I).

    After warmup eps (the dual-averaged value) and M are fixed; each iteration's step size is
    jittered by a uniform factor in [0.8, 1.2], which keeps a fixed trajectory length from
    resonating with the dynamics.

    Args:
        log_prob: maps thetas (C, P) to log densities (C,), up to a constant; differentiable.
        init: starting points (C, P), one per chain; its dtype and device are used throughout.
        n_samples: S >= 1 draws kept per chain.
        n_warmup: W >= 0 adaptation iterations per chain, discarded.
        step_size: eps > 0 to start from (used as is when ``n_warmup`` is 0).
        n_leapfrog: L >= 1 leapfrog steps per iteration.
        target_accept: mean acceptance probability that the step size adapts toward, in (0, 1).
        adapt_mass: whether to estimate a diagonal mass matrix during warmup (else M = I).
        generator: random number generator; fixing its seed makes the run reproducible.
        progress: show a tqdm progress bar.

    Returns:
        ``arviz.InferenceData`` with posterior ``theta`` (C, S, P) and sample stats
        ``acceptance_rate`` (the acceptance probability), ``step_size``, ``diverging``, ``lp``
        (log_prob) and ``energy`` (H at the start of the trajectory), each (C, S).

    Raises:
        TypeError: ``init`` is not a floating-point tensor, or an option has the wrong type.
        ValueError: ``init`` is not (C, P) and finite, an option is out of range, or
            ``log_prob`` does not return a finite (C,) tensor at ``init``.
    """
    theta = _check_init(init, generator)
    n_samples = _checks.count(n_samples, "n_samples", minimum=1)
    n_warmup = _checks.count(n_warmup, "n_warmup", minimum=0)
    n_leapfrog = _checks.count(n_leapfrog, "n_leapfrog", minimum=1)
    step_size = _checks.positive_float(step_size, "step_size")
    target_accept = _probability(target_accept, "target_accept")
    if not callable(log_prob):
        raise TypeError(f"log_prob must be callable; got {type(log_prob).__name__}")
    lp, grad = _value_and_grad(log_prob, theta)
    _check_finite(lp, grad)
    n_chains, dim = theta.shape
    like = {"dtype": theta.dtype, "device": theta.device}

    eps = torch.full((n_chains,), step_size, **like)
    inv_mass = torch.ones(n_chains, dim, **like)
    adapter = _DualAveraging(eps, target_accept)
    mass_start, mass_end = n_warmup // 2, n_warmup - n_warmup // 5
    adapt_mass = adapt_mass and mass_end - mass_start >= 10
    count, mean, m2 = 0, torch.zeros_like(theta), torch.zeros_like(theta)  # Welford

    out = torch.empty(n_chains, n_samples, dim, **like)
    stats = {k: torch.empty(n_chains, n_samples, **like) for k in ("acceptance_rate", "step_size")}
    stats |= {k: torch.empty(n_chains, n_samples, **like) for k in ("lp", "energy")}
    stats["diverging"] = torch.empty(n_chains, n_samples, dtype=torch.bool, device=theta.device)

    for it in tqdm(range(n_warmup + n_samples), desc="HMC", disable=not progress):
        jitter = 1 + _JITTER * (2 * torch.rand(n_chains, generator=generator, **like) - 1)
        h = (eps * jitter).unsqueeze(1)
        r = torch.randn(n_chains, dim, generator=generator, **like) / inv_mass.sqrt()
        energy = -lp + 0.5 * (r * r * inv_mass).sum(1)
        q, q_lp, q_grad = theta, lp, grad
        r = r + 0.5 * h * q_grad
        for step in range(n_leapfrog):
            q = q + h * inv_mass * r
            q_lp, q_grad = _value_and_grad(log_prob, q)
            r = r + (h if step < n_leapfrog - 1 else 0.5 * h) * q_grad
        new_energy = -q_lp + 0.5 * (r * r * inv_mass).sum(1)
        log_ratio = energy - new_energy
        alpha = _accept_prob(log_ratio)
        accept = torch.rand(n_chains, generator=generator, **like) < alpha
        theta = torch.where(accept.unsqueeze(1), q, theta)
        lp = torch.where(accept, q_lp, lp)
        grad = torch.where(accept.unsqueeze(1), q_grad, grad)

        if it < n_warmup:
            eps = adapter.update(alpha)
            if adapt_mass and mass_start <= it < mass_end:
                count += 1
                delta = theta - mean
                mean = mean + delta / count
                m2 = m2 + delta * (theta - mean)
            if adapt_mass and it == mass_end - 1:
                # Stan's regularisation: shrink the variance toward 1e-3 with weight 5 / (n + 5).
                var = m2 / (count - 1)
                inv_mass = (count / (count + 5)) * var + 1e-3 * (5 / (count + 5))
                adapter.restart(eps)
            if it == n_warmup - 1:
                eps = adapter.final()
        else:
            s = it - n_warmup
            out[:, s] = theta
            stats["acceptance_rate"][:, s] = alpha
            stats["step_size"][:, s] = h.squeeze(1)
            stats["lp"][:, s] = lp
            stats["energy"][:, s] = energy
            stats["diverging"][:, s] = ~(log_ratio > -_MAX_ENERGY_ERROR)  # NaN counts too
    return _inference_data(out, stats)


def metropolis(
    log_prob: LogProb,
    init: Tensor,
    *,
    n_samples: int,
    n_warmup: int,
    scale: float = 0.1,
    target_accept: float = 0.234,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> arviz.InferenceData:
    """Random-walk Metropolis with Gaussian proposals, one chain per row of ``init``.

    Chain c proposes theta' = theta + s_c z with z ~ N(0, I) and accepts with probability
    min(1, p(theta') / p(theta)) (NaN counts as 0). During warmup, Robbins-Monro on the log scale,
    log s_c += (t + 1)^-0.6 (alpha_t - target_accept), drives the mean acceptance probability
    toward ``target_accept`` (0.234 is optimal for many coordinates, Roberts et al. 1997); after
    warmup s_c is fixed.

    Args:
        log_prob: maps thetas (C, P) to log densities (C,), up to a constant.
        init: starting points (C, P), one per chain; its dtype and device are used throughout.
        n_samples: S >= 1 draws kept per chain.
        n_warmup: W >= 0 adaptation iterations per chain, discarded.
        scale: s > 0, the proposal's standard deviation to start from.
        target_accept: mean acceptance probability that the scale adapts toward, in (0, 1).
        generator: random number generator; fixing its seed makes the run reproducible.
        progress: show a tqdm progress bar.

    Returns:
        ``arviz.InferenceData`` with posterior ``theta`` (C, S, P) and sample stats
        ``acceptance_rate`` (the acceptance probability), ``scale`` and ``lp``, each (C, S).

    Raises:
        TypeError: ``init`` is not a floating-point tensor, or an option has the wrong type.
        ValueError: ``init`` is not (C, P) and finite, an option is out of range, or
            ``log_prob`` does not return a finite (C,) tensor at ``init``.
    """
    theta = _check_init(init, generator)
    n_samples = _checks.count(n_samples, "n_samples", minimum=1)
    n_warmup = _checks.count(n_warmup, "n_warmup", minimum=0)
    scale = _checks.positive_float(scale, "scale")
    target_accept = _probability(target_accept, "target_accept")
    if not callable(log_prob):
        raise TypeError(f"log_prob must be callable; got {type(log_prob).__name__}")
    lp = _value(log_prob, theta)
    _check_finite(lp)
    n_chains, dim = theta.shape
    like = {"dtype": theta.dtype, "device": theta.device}

    log_scale = torch.full((n_chains,), math.log(scale), **like)
    out = torch.empty(n_chains, n_samples, dim, **like)
    stats = {
        k: torch.empty(n_chains, n_samples, **like) for k in ("acceptance_rate", "scale", "lp")
    }

    for it in tqdm(range(n_warmup + n_samples), desc="Metropolis", disable=not progress):
        s = log_scale.exp()
        q = theta + s.unsqueeze(1) * torch.randn(n_chains, dim, generator=generator, **like)
        q_lp = _value(log_prob, q)
        alpha = _accept_prob(q_lp - lp)
        accept = torch.rand(n_chains, generator=generator, **like) < alpha
        theta = torch.where(accept.unsqueeze(1), q, theta)
        lp = torch.where(accept, q_lp, lp)
        if it < n_warmup:
            log_scale = log_scale + (it + 1) ** -0.6 * (alpha - target_accept)
        else:
            k = it - n_warmup
            out[:, k] = theta
            stats["acceptance_rate"][:, k] = alpha
            stats["scale"][:, k] = s
            stats["lp"][:, k] = lp
    return _inference_data(out, stats)


def draws(idata: arviz.InferenceData) -> Tensor:
    """All posterior draws of ``theta`` as one float64 tensor.

    Args:
        idata: the result of :func:`hmc` or :func:`metropolis` (posterior ``theta`` (C, S, P)).

    Returns:
        The draws (C * S, P), chain by chain.

    Raises:
        ValueError: ``idata`` has no posterior variable ``theta``.
    """
    posterior = getattr(idata, "posterior", None)
    if posterior is None or "theta" not in posterior:
        raise ValueError("idata must hold a posterior variable 'theta' (from hmc or metropolis)")
    values = torch.as_tensor(posterior["theta"].values, dtype=torch.float64)
    return values.reshape(-1, values.shape[-1])


def diagnostics(idata: arviz.InferenceData) -> dict[str, float]:
    """The convergence numbers a reader checks first, worst case over the coordinates of theta.

    Returns:
        ``max_rhat`` (rank-normalised split R-hat), ``min_ess_bulk``, ``min_ess_tail``,
        ``mean_acceptance`` and ``divergences`` (0 for Metropolis, which has none).
    """
    az = _arviz()
    stats = idata.sample_stats
    return {
        "max_rhat": float(az.rhat(idata)["theta"].max()),
        "min_ess_bulk": float(az.ess(idata, method="bulk")["theta"].min()),
        "min_ess_tail": float(az.ess(idata, method="tail")["theta"].min()),
        "mean_acceptance": float(stats["acceptance_rate"].mean()),
        "divergences": int(stats["diverging"].sum()) if "diverging" in stats else 0,
    }
