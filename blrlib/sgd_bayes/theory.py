"""The Ornstein-Uhlenbeck theory of constant SGD (Mandt, Hoffman & Blei, 2017).

    from blrlib import sgd_bayes
    C = sgd_bayes.gradient_noise_covariance(sgd_bayes.per_example_gradients(loss_i, theta))
    eps = sgd_bayes.optimal_learning_rate(C, batch_size=10, n_data=1000)
    Sigma = sgd_bayes.stationary_covariance(A, C, eps=eps, batch_size=10)  # A: mean-loss Hessian
    sgd_bayes.gaussian_kl(theta, Sigma, theta, torch.linalg.inv(1000 * A))

Conventions (the book's Conventions page): the loss is the per-example MEAN
L(theta) = -(1/N) sum_n log p(x_n | theta) - (1/N) log p(theta), A is its Hessian at the
optimum theta*, and the posterior is approximated by N(theta*, (N A)^-1). A minibatch-mean
gradient of size S (drawn with replacement) has noise covariance C / S, C = B B^T in the
paper. One SGD iteration is one unit of time of the Ornstein-Uhlenbeck process.

Derived in :ref:`sgd-ou`, :ref:`sgd-optimal-lr` and :ref:`sgd-averaging`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from blrlib._checks import count, positive_float
from blrlib.families import _gaussian_math as gm

__all__ = [
    "gaussian_kl",
    "gradient_noise_covariance",
    "least_squares_covariance",
    "optimal_learning_rate",
    "optimal_preconditioner",
    "per_example_gradients",
    "polyak_covariance",
    "sgfs_step",
    "sgld_noise",
    "stationary_covariance",
    "window_covariance",
]


def _square(M: object, name: str) -> Tensor:
    if not isinstance(M, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(M).__name__}")
    if M.dim() != 2 or M.shape[0] != M.shape[1] or M.shape[0] == 0:
        raise ValueError(f"{name}: expected a square (P, P) matrix; got {tuple(M.shape)}")
    if not torch.isfinite(M).all():
        raise ValueError(f"{name}: must be finite")
    gm.check_symmetric(M, name)
    return M


def _spd(M: object, name: str) -> Tensor:
    M = _square(M, name)
    if torch.linalg.cholesky_ex(M).info != 0:
        raise ValueError(f"{name}: must be symmetric positive definite")
    return M


def _psd(M: object, name: str) -> Tensor:
    M = _square(M, name)
    evals = torch.linalg.eigvalsh(M)
    if evals.min() < -1e-10 * max(float(evals.abs().max()), 1.0):
        raise ValueError(f"{name}: must be symmetric positive semi-definite")
    return M


def _same_size(P: int, M: Tensor, name: str) -> None:
    if M.shape[0] != P:
        raise ValueError(f"{name}: expected ({P}, {P}); got {tuple(M.shape)}")


def per_example_gradients(loss_i: Callable[[Tensor], Tensor], theta: Tensor) -> Tensor:
    """Gradients of each example's loss at ``theta``, the rows of the Jacobian.

    Args:
        loss_i: maps theta (P,) to the per-example losses (N,).
        theta: parameters, shape (P,).

    Returns:
        The Jacobian d loss_i / d theta, shape (N, P).

    Raises:
        TypeError: ``loss_i`` is not callable or ``theta`` is not a Tensor.
        ValueError: ``theta`` is not 1-D or ``loss_i`` does not return shape (N,).
    """
    if not callable(loss_i):
        raise TypeError(f"loss_i must be callable; got {type(loss_i).__name__}")
    if not isinstance(theta, Tensor):
        raise TypeError(f"theta must be a torch.Tensor; got {type(theta).__name__}")
    if theta.dim() != 1:
        raise ValueError(f"theta: expected shape (P,); got {tuple(theta.shape)}")
    jac = torch.func.jacrev(loss_i)(theta)
    if jac.dim() != 2:
        raise ValueError("loss_i: must return per-example losses of shape (N,)")
    return jac


def gradient_noise_covariance(per_example_grads: Tensor) -> Tensor:
    """Covariance C of a single uniformly drawn example's gradient (Mandt et al., Section 3).

    C = (1/N) sum_n (g_n - g_bar)(g_n - g_bar)^T, the population covariance (divisor N,
    not N - 1), so that the mean gradient of a minibatch of S examples drawn with
    replacement has covariance exactly C / S. Without replacement multiply by
    (N - S) / (N - 1).

    Args:
        per_example_grads: gradients g_n of the per-example losses, shape (N, P), N >= 2.

    Returns:
        C, shape (P, P), symmetric positive semi-definite.

    Raises:
        TypeError: ``per_example_grads`` is not a Tensor.
        ValueError: it is not 2-D with at least two rows, or not finite.
    """
    G = per_example_grads
    if not isinstance(G, Tensor):
        raise TypeError(f"per_example_grads must be a torch.Tensor; got {type(G).__name__}")
    if G.dim() != 2 or G.shape[0] < 2:
        raise ValueError(f"per_example_grads: expected (N, P) with N >= 2; got {tuple(G.shape)}")
    if not torch.isfinite(G).all():
        raise ValueError("per_example_grads: must be finite")
    Gc = G - G.mean(0)
    C = Gc.T @ Gc / G.shape[0]
    return (C + C.T) / 2


def stationary_covariance(
    A: Tensor,
    C: Tensor,
    *,
    eps: float,
    batch_size: int,
    preconditioner: Tensor | None = None,
    momentum: float = 0.0,
    injected: Tensor | None = None,
    discrete: bool = False,
) -> Tensor:
    """Stationary covariance Sigma of constant (preconditioned) SGD on a quadratic.

    The iteration is that of :func:`blrlib.sgd_bayes.run_chains`, with step matrix K = eps H:
        v <- mu v - K g_S + xi,   theta <- theta + v,
    g_S = A (theta - theta*) + nu, nu ~ N(0, C / S) the minibatch noise and xi ~ N(0, Q) an
    injected noise (Q = 0 for SGD; Q = 2 eps H / N for SGLD). With mu = 0 and Q = 0 this is
    the Ornstein-Uhlenbeck approximation of Mandt et al. (2017), Section 3: the
    continuous-time Lyapunov equation
        (K' A) Sigma + Sigma (K' A)^T = K' C K'^T / S + Q / (1 - mu)^2,   K' = K / (1 - mu),
    where momentum only rescales the step (the effective learning rate eps / (1 - mu) of their
    momentum analysis). With ``discrete=True``, the stationary covariance of the iteration
    itself: the discrete Lyapunov equation of the state (theta, v), whose theta block is
        Sigma = (I - K A) Sigma (I - K A)^T + K C K^T / S + Q   when mu = 0;
    the two differ by a relative O(eps lambda_max(H A) / (1 - mu)).

    The discrete solution is exact for the model above, whose minibatch noise nu is
    *additive*: drawn independently of theta, with the covariance C / S it has at theta*.
    Real minibatch gradients also carry a multiplicative part: on a quadratic loss,
    g_S = A_S (theta - theta*) + g_S(theta*) with A_S the minibatch Hessian, so the noise
    grows with |theta - theta*|. For Gaussian inputs and unit noise variance it adds
    (A Sigma A + A tr(A Sigma)) / S to C / S ~ A / S, a relative O(tr(A Sigma)), which is P / N
    at eps*; this function leaves it out (:func:`least_squares_covariance` includes it).

    Stability: the iteration converges in distribution only when every eigenvalue lambda of
    H A satisfies eps lambda < 2 (1 + mu) (the spectral radius of the state's transition
    matrix below 1). ``discrete=True`` raises outside that region, where no stationary
    covariance exists. The continuous-time process is stable for every eps > 0, but the
    iteration it approximates is not, so ``discrete=False`` warns (RuntimeWarning naming
    ``eps``) and still returns the Ornstein-Uhlenbeck solution.

    Args:
        A: Hessian of the mean loss at the optimum, (P, P), symmetric positive definite.
        C: single-example gradient noise covariance, (P, P), positive semi-definite.
        eps: learning rate, > 0: a float or a 0-d tensor (for one rate per chain, as
            :func:`run_chains` takes, call this once per rate).
        batch_size: minibatch size S, >= 1.
        preconditioner: H, (P, P) symmetric positive definite; None means the identity.
        momentum: mu in [0, 1).
        injected: Q, (P, P) positive semi-definite, the covariance of the noise added at each
            step; None means no injected noise.
        discrete: solve the discrete-time equation instead of the continuous one.

    Returns:
        Sigma, shape (P, P), with A's dtype and device.

    Raises:
        TypeError: an argument has the wrong type (``eps`` a tensor with more than 0 dims).
        ValueError: A or H is not SPD, C or Q is not PSD, shapes disagree, eps or batch_size
            is not positive, momentum is outside [0, 1), or (discrete) eps lies outside the
            stability region eps lambda_max(H A) < 2 (1 + mu).

    Warns:
        RuntimeWarning: (continuous) eps lies outside that stability region.
    """
    A = _spd(A, "A")
    P = A.shape[0]
    C = _psd(C, "C")
    _same_size(P, C, "C")
    eps = _eps(eps)
    S = count(batch_size, "batch_size")
    mu = _momentum(momentum)
    if preconditioner is None:
        H = torch.eye(P, dtype=A.dtype, device=A.device)
    else:
        H = _spd(preconditioner, "preconditioner")
        _same_size(P, H, "preconditioner")
    Q = torch.zeros_like(A) if injected is None else _psd(injected, "injected")
    _same_size(P, Q, "injected")
    K = _numpy(eps * H)
    KA = K @ _numpy(A)
    R = K @ _numpy(C) @ K.T / S + _numpy(Q)
    # the eigenvalues of K A = eps H A are real and positive (similar to eps H^1/2 A H^1/2)
    edge = float(np.linalg.eigvals(KA).real.max()) / (2 * (1 + mu))
    if edge >= 1:
        message = (
            f"eps: eps lambda_max(H A) = {2 * (1 + mu) * edge:.4g} >= 2 (1 + momentum) ="
            f" {2 * (1 + mu):.4g}: the SGD iteration is unstable at eps = {eps:.4g}; need"
            f" eps < {eps / edge:.4g}"
        )
        if discrete:
            raise ValueError(message)
        warnings.warn(
            message + " (the continuous-time covariance describes no SGD run)",
            RuntimeWarning,
            stacklevel=2,
        )
    if not discrete:
        sigma = scipy.linalg.solve_continuous_lyapunov(KA / (1 - mu), R / (1 - mu) ** 2)
    else:
        # the state (theta, v): theta' = (I - K A) theta + mu v + w, v' = -K A theta + mu v + w
        eye = np.eye(P)
        M = np.block([[eye - KA, mu * eye], [-KA, mu * eye]])
        sigma = scipy.linalg.solve_discrete_lyapunov(M, np.block([[R, R], [R, R]]))[:P, :P]
    sigma = (sigma + sigma.T) / 2
    return torch.as_tensor(sigma, dtype=A.dtype, device=A.device)


def _eps(eps: object, name: str = "eps") -> float:
    """A learning rate given as a float or a 0-d tensor, as a positive float."""
    if isinstance(eps, Tensor):
        if eps.dim() != 0:
            raise TypeError(
                f"{name} must be a float or a 0-d tensor; got shape {tuple(eps.shape)}"
                " (for one rate per chain, call once per rate)"
            )
        if eps.dtype == torch.bool or eps.is_complex():
            raise TypeError(f"{name} must be a real number; got a {eps.dtype} tensor")
        eps = eps.item()
    return positive_float(eps, name)


def _numpy(M: Tensor) -> np.ndarray:
    return M.detach().cpu().numpy().astype(np.float64)


def _momentum(momentum: object) -> float:
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)):
        raise TypeError(f"momentum must be a float in [0, 1); got {type(momentum).__name__}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1); got {momentum!r}")
    return float(momentum)


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
    H = _spd(preconditioner, "preconditioner")
    return 2 * _eps(eps) * H / count(n_data, "n_data")


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
    F = _spd(fisher, "fisher")
    eps = _eps(eps)
    S, N = count(batch_size, "batch_size"), count(n_data, "n_data")
    gamma = (N + S) / S
    B = gamma * N * F / 4 if B is None else _spd(B, "B")
    _same_size(F.shape[0], B, "B")
    K = 2 * N * torch.linalg.inv(gamma * N * F + 4 * B / eps)
    K = (K + K.T) / 2
    Q = (K / N) @ (4 * B / eps) @ (K / N)
    return K, (Q + Q.T) / 2


def polyak_covariance(A: Tensor, C: Tensor, *, batch_size: int, n_steps: int) -> Tensor:
    """Covariance of the average of T stationary constant-SGD iterates, for large T.

    Mandt et al. (2017), on Polyak averaging: the average theta_bar_T = (1/T) sum_t theta_t has
    Cov = A^-1 C A^-1 / (T S) + O(1 / (eps T^2)), whatever the learning rate eps: the
    Cramer-Rao-optimal rate of Polyak & Juditsky (1992). It equals the posterior (N A)^-1 when
    T S = N and C = A (the model's Fisher equals its Hessian), which motivates averaging over
    windows of one epoch (the Averaged Stochastic Gradient Sampler).

    Args:
        A: Hessian of the mean loss at the optimum, (P, P), SPD.
        C: single-example gradient noise covariance, (P, P), PSD.
        batch_size: minibatch size S, >= 1.
        n_steps: number of averaged iterates T, >= 1.

    Returns:
        A^-1 C A^-1 / (T S), shape (P, P).
    """
    A = _spd(A, "A")
    C = _psd(C, "C")
    _same_size(A.shape[0], C, "C")
    S, T = count(batch_size, "batch_size"), count(n_steps, "n_steps")
    Ainv = torch.cholesky_inverse(torch.linalg.cholesky(A))
    cov = Ainv @ C @ Ainv / (T * S)
    return (cov + cov.T) / 2


def least_squares_covariance(
    X: Tensor,
    C: Tensor,
    *,
    eps: float,
    batch_size: int,
    noise_precision: float = 1.0,
    prior_precision: float = 0.0,
    preconditioner: Tensor | None = None,
    injected: Tensor | None = None,
) -> Tensor:
    """Exact stationary covariance of minibatch SGD on least squares, multiplicative noise included.

    The mean loss L = (1/N) sum_n beta (x_n^T theta - y_n)^2 / 2 + alpha |theta|^2 / (2 N) has
    minibatch gradients g_S = A_S (theta - theta*) + g_S(theta*), where the minibatch Hessian
    A_S = beta (1/S) sum_{i in batch} x_i x_i^T + (alpha / N) I is random: the noise grows with
    |theta - theta*|, which :func:`stationary_covariance` leaves out. With S examples drawn
    with replacement, E[(A_S - A) Sigma (A_S - A)] = (beta^2 / S) (F(Sigma) - A_x Sigma A_x),
    F(Sigma) = (1/N) sum_n (x_n^T Sigma x_n) x_n x_n^T and A_x = X^T X / N, and the second
    moment of theta - theta* under theta <- theta - K g_S + xi (K = eps H, xi ~ N(0, Q)) obeys
    the linear fixed point
        Sigma = M Sigma M^T + (beta^2 / S) K (F(Sigma) - A_x Sigma A_x) K^T + K C K^T / S + Q,
    M = I - K A, solved here in vec form (P^2 unknowns). Its lagged covariances are still
    M^k Sigma, so :func:`window_covariance` accepts it as ``stationary``.

    Args:
        X: the inputs, (N, P).
        C: single-example gradient noise covariance at theta*, (P, P), PSD.
        eps: learning rate, > 0 (a float or a 0-d tensor).
        batch_size: minibatch size S, >= 1.
        noise_precision: beta, > 0.
        prior_precision: alpha, >= 0.
        preconditioner: H, (P, P) SPD; None means the identity.
        injected: Q, (P, P) PSD (SGLD, SGFS); None means none.

    Returns:
        Sigma, (P, P), with X's dtype and device.

    Raises:
        TypeError, ValueError: bad shapes or values, naming the argument; ``eps`` for which
            the second moment has no fixed point (the recursion diverges).
    """
    if not isinstance(X, Tensor) or X.dim() != 2 or X.shape[0] < 1:
        raise ValueError(f"X: expected an (N, P) tensor; got {getattr(X, 'shape', X)}")
    N, P = X.shape
    C = _psd(C, "C")
    _same_size(P, C, "C")
    eps, S = _eps(eps), count(batch_size, "batch_size")
    beta = positive_float(noise_precision, "noise_precision")
    if isinstance(prior_precision, bool) or not isinstance(prior_precision, (int, float)):
        raise TypeError("prior_precision must be a float >= 0")
    if not prior_precision >= 0:
        raise ValueError(f"prior_precision must be >= 0; got {prior_precision!r}")
    H = np.eye(P) if preconditioner is None else _numpy(_spd(preconditioner, "preconditioner"))
    _same_size(P, torch.as_tensor(H), "preconditioner")
    Q = np.zeros((P, P)) if injected is None else _numpy(_psd(injected, "injected"))
    _same_size(P, torch.as_tensor(Q), "injected")
    x = _numpy(X)
    Ax = x.T @ x / N
    K = eps * H
    M = np.eye(P) - K @ (beta * Ax + prior_precision / N * np.eye(P))
    outer = np.einsum("ni,nj->nij", x, x).reshape(N, P * P)
    F = outer.T @ outer / N  # (1/N) sum_n (x x^T) kron (x x^T), acting on row-major vec
    op = np.kron(M, M) + beta**2 / S * np.kron(K, K) @ (F - np.kron(Ax, Ax))
    rhs = (K @ _numpy(C) @ K.T / S + Q).reshape(-1)
    if float(np.abs(np.linalg.eigvals(op)).max()) >= 1:
        raise ValueError(f"eps: the second moment of SGD diverges at eps = {eps:.4g}")
    sigma = np.linalg.solve(np.eye(P * P) - op, rhs).reshape(P, P)
    sigma = (sigma + sigma.T) / 2
    return torch.as_tensor(sigma, dtype=X.dtype, device=X.device)


def window_covariance(
    A: Tensor,
    C: Tensor,
    *,
    eps: float,
    batch_size: int,
    window: int,
    preconditioner: Tensor | None = None,
    stationary: Tensor | None = None,
) -> Tensor:
    """Exact covariance of the mean of ``window`` consecutive stationary constant-SGD iterates.

    The samples of the Averaged Stochastic Gradient Sampler (Mandt et al. 2017, on iterate
    averaging): with M = I - eps H A and Sigma the discrete stationary covariance
    (:func:`stationary_covariance` with ``discrete=True``), the mean of T iterates has
        Cov = (1/T^2) [T Sigma + G Sigma + Sigma G^T],   G = sum_{k=1}^{T-1} (T - k) M^k
            = T (I - M)^-1 - M (I - M^T) (I - M)^-2 - T I,
    which tends to :func:`polyak_covariance` with ``n_steps=T`` as T grows, whatever eps and H
    (the remainder is O(1 / (eps lambda_min(H A) T))). Like :func:`stationary_covariance` it
    assumes additive minibatch noise.

    Args:
        A: Hessian of the mean loss at the optimum, (P, P), SPD.
        C: single-example gradient noise covariance, (P, P), PSD.
        eps: learning rate, > 0 (a float or a 0-d tensor), inside the stability region.
        batch_size: minibatch size S, >= 1.
        window: T, the number of consecutive iterates averaged, >= 1.
        preconditioner: H, (P, P) SPD; None means the identity.
        stationary: Sigma, (P, P), to use instead of the additive-noise solution, e.g.
            :func:`least_squares_covariance` (whose lagged covariances are also M^k Sigma).

    Returns:
        The covariance of one window mean, (P, P).

    Raises:
        TypeError, ValueError: as :func:`stationary_covariance`, and ``window`` below 1.
    """
    T = count(window, "window")
    sigma = stationary_covariance(
        A, C, eps=eps, batch_size=batch_size, preconditioner=preconditioner, discrete=True
    )
    if stationary is not None:
        sigma = _psd(stationary, "stationary")
        _same_size(A.shape[0], sigma, "stationary")
    P = A.shape[0]
    H = np.eye(P) if preconditioner is None else _numpy(preconditioner)
    KA = _eps(eps) * H @ _numpy(A)
    M, eye = np.eye(P) - KA, np.eye(P)
    inv = np.linalg.inv(KA)  # (I - M)^-1
    G = T * inv - M @ (eye - np.linalg.matrix_power(M, T)) @ inv @ inv - T * eye
    S = _numpy(sigma)
    cov = (T * S + G @ S + S @ G.T) / T**2
    cov = (cov + cov.T) / 2
    return torch.as_tensor(cov, dtype=A.dtype, device=A.device)


def gaussian_kl(mean_q: Tensor, cov_q: Tensor, mean_p: Tensor, cov_p: Tensor) -> Tensor:
    """KL(q || p) between Gaussians q = N(mean_q, cov_q) and p = N(mean_p, cov_p).

    KL = 1/2 [tr(cov_p^-1 cov_q) + d^T cov_p^-1 d - P + log det cov_p - log det cov_q],
    d = mean_p - mean_q; Mandt et al. (2017) minimise it with q the SGD
    stationary distribution and p the approximate posterior.

    Args:
        mean_q, mean_p: means, shape (P,).
        cov_q, cov_p: covariances, (P, P), symmetric positive definite.

    Returns:
        A scalar Tensor.

    Raises:
        TypeError: an argument is not a Tensor.
        ValueError: shapes disagree or a covariance is not SPD.
    """
    cov_q, cov_p = _spd(cov_q, "cov_q"), _spd(cov_p, "cov_p")
    P = cov_p.shape[0]
    _same_size(P, cov_q, "cov_q")
    for m, name in ((mean_q, "mean_q"), (mean_p, "mean_p")):
        if not isinstance(m, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(m).__name__}")
        if m.shape != (P,):
            raise ValueError(f"{name}: expected shape ({P},); got {tuple(m.shape)}")
    Lp, Lq = torch.linalg.cholesky(cov_p), torch.linalg.cholesky(cov_q)
    trace = torch.linalg.solve_triangular(Lp, Lq, upper=False).square().sum()
    z = torch.linalg.solve_triangular(Lp, (mean_p - mean_q)[:, None], upper=False)
    logdet = 2 * (Lp.diagonal().log().sum() - Lq.diagonal().log().sum())
    return 0.5 * (trace + z.square().sum() - P + logdet)


def optimal_learning_rate(C: Tensor, *, batch_size: int, n_data: int) -> float:
    """KL-optimal constant learning rate eps* = 2 S P / (N tr C) (Mandt et al., Theorem 1).

    Assumes the mean loss is quadratic near theta* with Hessian A, the noise covariance C
    is constant there, and the posterior is N(theta*, (N A)^-1). eps* minimises
    KL(N(theta*, Sigma(eps)) || N(theta*, (N A)^-1)) with Sigma(eps) the continuous-time
    Lyapunov solution, for ANY SPD A and C: the trace of the Lyapunov equation gives
    tr(A Sigma) = eps tr C / (2 S) and log det Sigma = P log eps + const, so A drops out.
    It is not the minimiser for the discrete-time covariance (off by O(eps lambda_max(A))).

    Args:
        C: single-example gradient noise covariance, (P, P), PSD with tr C > 0.
        batch_size: minibatch size S, >= 1.
        n_data: number of examples N, >= 1.

    Returns:
        eps* as a float.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: C is not PSD or has zero trace, or a count is below 1.
    """
    C = _psd(C, "C")
    S, N = count(batch_size, "batch_size"), count(n_data, "n_data")
    trace = float(C.trace())
    if trace <= 0:
        raise ValueError("C: must have a positive trace")
    return 2 * S * C.shape[0] / (N * trace)


def optimal_preconditioner(
    C: Tensor, *, batch_size: int, eps: float, n_data: int, diagonal: bool = False
) -> Tensor:
    """KL-optimal preconditioner H* = (2 S / (eps N)) C^-1 (Mandt et al., Theorem 2).

    Assumptions as in :func:`optimal_learning_rate`. With the full H*, the continuous-time
    stationary covariance is exactly the posterior (N A)^-1 for any SPD A and C:
    (H A)(N A)^-1 + (N A)^-1 (A H) = 2 H / N = (eps / S) H C H. With ``diagonal=True``
    C is replaced by diag(C) (per-coordinate rates 2 S / (eps N C_kk), as in TensorFlow
    Probability's VariationalSGD); this matches the posterior only when C is diagonal.

    Args:
        C: single-example gradient noise covariance, (P, P), SPD (its diagonal positive
            when ``diagonal``).
        batch_size: minibatch size S, >= 1.
        eps: learning rate, > 0: a float or a 0-d tensor.
        n_data: number of examples N, >= 1.
        diagonal: use diag(C) instead of C.

    Returns:
        H*, shape (P, P).

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: C is not SPD (or has a non-positive diagonal), or a scalar is invalid.
    """
    S, N = count(batch_size, "batch_size"), count(n_data, "n_data")
    eps = _eps(eps)
    scale = 2 * S / (eps * N)
    if diagonal:
        C = _psd(C, "C")
        d = C.diagonal()
        if (d <= 0).any():
            raise ValueError("C: diagonal must be positive when diagonal=True")
        return torch.diag(scale / d)
    C = _spd(C, "C")
    H = scale * torch.cholesky_inverse(torch.linalg.cholesky(C))
    return (H + H.T) / 2
