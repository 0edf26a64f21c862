"""Constant SGD, SGLD and SGFS as samplers: many independent chains in parallel.

    from blrlib import infer, sgd_bayes
    model = infer.BayesModel(torch.nn.Linear(2, 1, bias=False), "gaussian", prior_precision=1.0)
    loss = sgd_bayes.minibatch_loss(model, X, y)        # (K, P) chains, (K, S) indices -> (K,)
    chains = sgd_bayes.run_chains(loss, theta0.expand(1000, -1), n_data=len(X), batch_size=10,
                                  eps=0.01, n_steps=2000, burn_in=1000)
    chains.samples.shape, chains.average.shape         # (1000, 1000, 2) and (1000, 2)

Every sampler is one iteration (Mandt, Hoffman & Blei 2017),
    v <- mu v - K g_S(theta) + xi,   theta <- theta + v,   xi ~ N(0, Q),
with g_S the gradient of the minibatch-mean loss (S examples drawn with replacement):
constant SGD (K = eps H, Q = 0), SGLD (K = eps H, Q = 2 eps H / N) and SGFS (K, Q from
:func:`blrlib.sgd_bayes.sgfs_step`), with momentum mu for the heavy-ball sampler. The step
theta - K g_S is the Bayesian learning rule's SGD (Khan & Rue 2023, Eq 34-35): it is computed
by :func:`blrlib.blr.step` with a fixed-covariance Gaussian and the delta method, in the
whitened coordinates phi = L^-1 theta (K = L L^T), where preconditioned SGD is plain SGD. The
chains are stacked into one vector whose loss is the sum of the chains' losses, so the engine
moves them all at once (on any device).

Derived in :ref:`sgd-samplers`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor
from tqdm.auto import tqdm

from blrlib import blr
from blrlib._checks import count, positive_float
from blrlib.estimators import parse_option
from blrlib.families import FixedCovGaussian
from blrlib.infer.model import BayesModel
from blrlib.sgd_bayes import _checks as check
from blrlib.sgd_bayes.noise import gradient_noise_covariance, per_example_gradients

__all__ = [
    "Chains", "Sampler", "local_quadratic", "minibatch_loss", "run_chains", "sgfs_step",
    "sgld_noise",
]  # fmt: skip

BatchLoss = Callable[[Tensor, Tensor], Tensor]


class Sampler(str, Enum):
    """The iteration's noise: none (constant SGD), Langevin (SGLD) or Fisher scoring (SGFS)."""

    SGD = "sgd"
    SGLD = "sgld"
    SGFS = "sgfs"


@dataclass(frozen=True)
class Chains:
    """The output of :func:`run_chains`.

    Attributes:
        samples: means of consecutive windows of ``window`` iterates after the burn-in, every
            ``thin``-th window kept, (T, K, P); with ``window=1`` and ``thin=1`` the iterates
            themselves.
        average: the Polyak average of all iterates after the burn-in, per chain, (K, P).
        final: the last iterate of each chain, (K, P).
    """

    samples: Tensor
    average: Tensor
    final: Tensor


def minibatch_loss(model: BayesModel, X: Tensor, y: Tensor) -> BatchLoss:
    """The minibatch-mean loss of each chain, for :func:`run_chains`.

    L_S(theta) = (1/S) sum_{i in batch} -log p(y_i | x_i, theta) + R(theta) / N, whose mean over
    uniformly drawn batches is the mean loss L of the Conventions page (R the negative log
    prior), so that N L is the negative log joint.

    Args:
        model: the likelihood and prior; its module's forward is vmapped over the chains.
        X, y: the data set, (N, ...) and (N, ...).

    Returns:
        A function of theta (K, P) and indices (K, S) returning the K minibatch losses; an
        index of -1 is padding (:func:`run_chains` pads when the batch size differs by chain).
    """
    if not isinstance(model, BayesModel):
        raise TypeError(f"model must be a blrlib.infer.BayesModel; got {type(model).__name__}")
    if X.shape[0] != y.shape[0] or X.shape[0] < 1:
        raise ValueError(f"X, y: need the same number N >= 1 of rows; got {len(X)}, {len(y)}")
    n = X.shape[0]
    with torch.no_grad():  # shapes, dtypes and labels, once: under vmap they cannot be read
        model.nll(model.theta0(), X, y)

    def one_chain(theta: Tensor, Xb: Tensor, yb: Tensor, mask: Tensor) -> Tensor:
        nll = (model.nll(theta, Xb, yb) * mask).sum() / mask.sum()
        return nll + model.regulariser(theta) / n

    batched = torch.func.vmap(one_chain)

    def loss(theta: Tensor, idx: Tensor) -> Tensor:
        valid = idx >= 0
        idx = idx.clamp(min=0)
        return batched(theta, X[idx], y[idx], valid.to(theta.dtype))

    return loss


def local_quadratic(
    model: BayesModel, X: Tensor, y: Tensor, theta: Tensor
) -> tuple[Tensor, Tensor]:
    """The Hessian A of the mean loss and the gradient-noise covariance C at ``theta``.

    The two matrices of the Ornstein-Uhlenbeck approximation (Mandt et al. 2017, Section 3):
    A = Hessian of L = (1/N) (sum_i nll_i + R), and C the covariance of one uniformly drawn
    example's gradient of nll_i + R / N (see :func:`blrlib.sgd_bayes.gradient_noise_covariance`).

    Returns:
        (A, C), each (P, P).
    """
    n = X.shape[0]
    A = torch.func.hessian(lambda t: model.loss(t, X, y) / n)(theta)
    grads = per_example_gradients(lambda t: model.nll(t, X, y) + model.regulariser(t) / n, theta)
    return (A + A.T) / 2, gradient_noise_covariance(grads)


def run_chains(
    loss: BatchLoss,
    theta0: Tensor,
    *,
    n_data: int,
    batch_size: int,
    eps: float | Tensor,
    n_steps: int,
    sampler: Sampler | str = Sampler.SGD,
    preconditioner: Tensor | None = None,
    momentum: float = 0.0,
    fisher: Tensor | None = None,
    burn_in: int = 0,
    window: int = 1,
    thin: int = 1,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> Chains:
    """Run K independent chains of constant SGD, SGLD or SGFS, vectorised.

    Implements the iteration in the module docstring. The Averaged Stochastic Gradient Sampler
    of Mandt et al. (2017) is ``window`` of about N / S: each sample is then the
    average of one epoch of constant-SGD iterates.

    Args:
        loss: minibatch loss, theta (K, P) and indices (K, S) -> (K,), e.g.
            :func:`minibatch_loss`.
        theta0: starting points, (K, P).
        n_data: N, the number of examples indices are drawn from.
        batch_size: S, drawn with replacement, 1 <= S <= N; or one per chain, an integer
            tensor (K,), in which case chain k's indices are padded with -1 after its S_k.
        eps: learning rate, a float or one per chain, (K,) (e.g. a sweep in one run); must be
            a float for SGFS.
        n_steps: iterations, including the burn-in.
        sampler: ``"sgd"``, ``"sgld"`` or ``"sgfs"``.
        preconditioner: H, (P, P) SPD, for SGD and SGLD; None means the identity.
        momentum: mu in [0, 1).
        fisher: the empirical Fisher I_hat (P, P), required for SGFS.
        burn_in: iterations discarded before recording.
        window: iterates averaged into one sample.
        thin: keep every ``thin``-th window (the others still count in ``average``); the
            memory is ``(n_steps - burn_in) // (window * thin)`` samples of (K, P).
        generator: for the minibatches and the injected noise.
        progress: show a tqdm progress bar.

    Returns:
        :class:`Chains` with ceil(((n_steps - burn_in) // window) / thin) samples.

    Raises:
        TypeError, ValueError: bad shapes or values, naming the argument (the engine also
            rejects non-finite losses).
    """
    sampler = parse_option(sampler, Sampler, "sampler")
    if not isinstance(theta0, Tensor) or theta0.dim() != 2:
        raise ValueError(f"theta0: expected a (K, P) tensor; got {getattr(theta0, 'shape', None)}")
    K, P = theta0.shape
    N = count(n_data, "n_data")
    sizes = _batch_sizes(batch_size, K, N, theta0.device)
    S = int(sizes.max())
    n_steps, burn_in = count(n_steps, "n_steps"), count(burn_in, "burn_in", minimum=0)
    window, thin = count(window, "window"), count(thin, "thin")
    n_windows = (n_steps - burn_in) // window
    if n_windows < 1:
        raise ValueError(f"n_steps: {n_steps} leaves no window of {window} after burn_in {burn_in}")
    mu = check.momentum(momentum)
    like = {"dtype": theta0.dtype, "device": theta0.device}
    padded = torch.arange(S, device=theta0.device) >= sizes[:, None]
    padded = padded if padded.any() else None
    if sampler is Sampler.SGFS and padded is not None:
        raise ValueError("batch_size: SGFS needs one batch size for all chains")
    chol, rate, noise = _whitened_step(sampler, eps, K, P, N, S, preconditioner, fisher, like)
    # the engine's SGD on phi = L^-1 theta, theta = L phi: N(phi, diag(rate)) with rho = 1
    q = FixedCovGaussian(rate.repeat_interleave(P).reciprocal())
    phi = torch.linalg.solve_triangular(chol, theta0.detach().T, upper=False).T
    velocity = torch.zeros_like(phi)
    samples = torch.zeros(-(-n_windows // thin), K, P, **like)
    total = torch.zeros(K, P, **like)
    for t in tqdm(range(n_steps), disable=not progress, desc=f"{sampler.value} chains"):
        idx = torch.randint(0, N, (K, S), generator=generator, device=theta0.device)
        if padded is not None:
            idx = idx.masked_fill(padded, -1)

        def chain_loss(flat: Tensor, idx: Tensor = idx) -> Tensor:
            return loss(flat.view(K, P) @ chol.T, idx).sum()

        lam = q.natural_from_moments(phi.reshape(-1))
        new = blr.step(q, lam, chain_loss, rho=1.0, estimator="delta")[0] / q.precision
        new = new.view(K, P) + mu * velocity
        if noise is not None:
            z = torch.randn(K, P, generator=generator, **like)
            new = new + (z @ noise.T if noise.dim() == 2 else noise[:, None] * z)
        velocity, phi = new - phi, new
        w = (t - burn_in) // window
        if t >= burn_in and w < n_windows:
            theta = phi @ chol.T
            total += theta
            if w % thin == 0:
                samples[w // thin] += theta / window
    return Chains(samples=samples, average=total / (n_windows * window), final=phi @ chol.T)


def _batch_sizes(batch_size: int | Tensor, K: int, N: int, device: torch.device) -> Tensor:
    if isinstance(batch_size, Tensor):
        if batch_size.shape != (K,) or batch_size.dtype.is_floating_point:
            raise ValueError(f"batch_size: an int or an integer tensor of shape ({K},)")
        sizes = batch_size.to(device)
    else:
        sizes = torch.full((K,), count(batch_size, "batch_size"), device=device)
    if (sizes < 1).any() or (sizes > N).any():
        raise ValueError(f"batch_size: must be between 1 and n_data = {N}; got {sizes.unique()}")
    return sizes


def _whitened_step(
    sampler: Sampler,
    eps: float | Tensor,
    K: int,
    P: int,
    N: int,
    S: int,
    preconditioner: Tensor | None,
    fisher: Tensor | None,
    like: dict,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """L, the per-chain rate r and the injected noise, with step matrix r_k L L^T.

    In phi = L^-1 theta the step is phi <- phi - r_k grad_phi, and the noise is returned as its
    factor in phi: (K,) scales of a standard normal (SGLD: sqrt(2 eps_k / N)), a (P, P)
    Cholesky factor (SGFS: of L^-1 Q L^-T) or None (SGD).
    """
    if sampler is Sampler.SGFS:
        if not isinstance(eps, (int, float)) or isinstance(eps, bool):
            raise TypeError("eps: SGFS needs one float learning rate")
        if preconditioner is not None:
            raise ValueError("preconditioner: SGFS sets its own (from fisher); pass None")
        if fisher is None:
            raise ValueError("fisher: SGFS needs the empirical Fisher (P, P)")
        check.same_size(P, check.spd(fisher, "fisher"), "fisher")
        step, Q = sgfs_step(fisher.to(**like), eps=eps, batch_size=S, n_data=N)
        chol = torch.linalg.cholesky(step)
        half = torch.linalg.solve_triangular(chol, torch.linalg.cholesky(Q), upper=False)
        return chol, torch.ones(K, **like), half
    if fisher is not None:
        raise ValueError("fisher: only used by sampler='sgfs'")
    if isinstance(eps, Tensor):
        rate = eps.detach().to(**like)
        if rate.shape != (K,):
            raise ValueError(f"eps: expected a float or shape ({K},); got {tuple(rate.shape)}")
        if not (torch.isfinite(rate).all() and (rate > 0).all()):
            raise ValueError("eps: must be positive and finite")
    else:
        rate = torch.full((K,), positive_float(eps, "eps"), **like)
    if preconditioner is None:
        chol = torch.eye(P, **like)
    else:
        H = check.spd(preconditioner, "preconditioner")
        check.same_size(P, H, "preconditioner")
        chol = torch.linalg.cholesky(H.to(**like))
    noise = (2 * rate / N).sqrt() if sampler is Sampler.SGLD else None
    return chol, rate, noise


def sgld_noise(preconditioner: Tensor, *, eps: float, n_data: int) -> Tensor:
    """Injected noise Q = 2 eps H / N of (preconditioned) SGLD on the mean loss.

    Langevin dynamics for the posterior exp(-N L(theta)) discretised with step eps H
    (Welling & Teh 2011; Mandt et al. 2017, their SG-MCMC analysis):
    theta <- theta - eps H g_S + xi,
    xi ~ N(0, 2 eps H / N). With exact gradients and eps -> 0 its stationary distribution is
    the posterior; at finite eps the minibatch noise adds the constant-SGD covariance
    (Lyapunov: Sigma = (N A)^-1 + Sigma_SGD(eps) when H = I).

    Args:
        preconditioner: H, (P, P) symmetric positive definite (the identity for plain SGLD).
        eps: learning rate, > 0: a float or a 0-d tensor.
        n_data: number of examples N, >= 1.

    Returns:
        Q, shape (P, P).
    """
    H = check.spd(preconditioner, "preconditioner")
    return 2 * check.learning_rate(eps) * H / count(n_data, "n_data")


def sgfs_step(
    fisher: Tensor, *, eps: float, batch_size: int, n_data: int, B: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Step matrix K and injected noise Q of Stochastic Gradient Fisher Scoring.

    SGFS (Ahn, Korattikara & Welling 2012) on the mean loss L, with gamma = (N + S) / S, is
        theta <- theta - K g_S + xi,   K = 2 N (gamma N I_hat + 4 B / eps)^-1,
        xi ~ N(0, Q),   Q = (K / N) (4 B / eps) (K / N),
    with I_hat the empirical Fisher (the single-example gradient covariance C). As eps -> inf
    the noise vanishes and K -> (2 S / (N + S)) I_hat^-1: preconditioned constant SGD close to
    Mandt et al.'s optimal preconditioner eps H* = (2 S / N) C^-1 (their SGFS analysis).

    Args:
        fisher: I_hat, (P, P) symmetric positive definite.
        eps: learning rate, > 0: a float or a 0-d tensor.
        batch_size: minibatch size S, >= 1.
        n_data: number of examples N, >= 1.
        B: SGFS's free matrix, (P, P) SPD; None means B = gamma N I_hat / 4, for which
            K = (2 / gamma) I_hat^-1 / (1 + 1 / eps) (our default, not the paper's).

    Returns:
        (K, Q), each (P, P).
    """
    F = check.spd(fisher, "fisher")
    eps = check.learning_rate(eps)
    S, N = count(batch_size, "batch_size"), count(n_data, "n_data")
    gamma = (N + S) / S
    B = gamma * N * F / 4 if B is None else check.spd(B, "B")
    check.same_size(F.shape[0], B, "B")
    K = 2 * N * torch.linalg.inv(gamma * N * F + 4 * B / eps)
    K = (K + K.T) / 2
    Q = (K / N) @ (4 * B / eps) @ (K / N)
    return K, (Q + Q.T) / 2
