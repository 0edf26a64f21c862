"""The stationary covariance of constant SGD on a quadratic (Mandt, Hoffman & Blei 2017, Sec 3-4).

    Sigma = sgd_bayes.stationary_covariance(A, C, eps=eps, batch_size=10)    # Lyapunov
    Sigma = sgd_bayes.stationary_covariance(A, C, eps=eps, batch_size=10, discrete=True)
    Sigma = sgd_bayes.least_squares_covariance(X, C, eps=eps, batch_size=10)  # exact, LS

Conventions (the book's Conventions page): the loss is the per-example MEAN
L(theta) = -(1/N) sum_n log p(x_n | theta) - (1/N) log p(theta), A is its Hessian at the
optimum theta*, and the posterior is approximated by N(theta*, (N A)^-1). A minibatch-mean
gradient of size S (drawn with replacement) has noise covariance C / S, C = B B^T in the
paper. One SGD iteration is one unit of time of the Ornstein-Uhlenbeck process.

Derived in :ref:`sgd-ou`.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from blrlib._checks import count, positive_float
from blrlib.sgd_bayes import _checks as check

__all__ = ["least_squares_covariance", "stationary_covariance"]


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
    A = check.spd(A, "A")
    P = A.shape[0]
    C = check.psd(C, "C")
    check.same_size(P, C, "C")
    eps = check.learning_rate(eps)
    S = count(batch_size, "batch_size")
    mu = check.momentum(momentum)
    if preconditioner is None:
        H = torch.eye(P, dtype=A.dtype, device=A.device)
    else:
        H = check.spd(preconditioner, "preconditioner")
        check.same_size(P, H, "preconditioner")
    Q = torch.zeros_like(A) if injected is None else check.psd(injected, "injected")
    check.same_size(P, Q, "injected")
    K = check.as_numpy(eps * H)
    KA = K @ check.as_numpy(A)
    R = K @ check.as_numpy(C) @ K.T / S + check.as_numpy(Q)
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
    C = check.psd(C, "C")
    check.same_size(P, C, "C")
    eps, S = check.learning_rate(eps), count(batch_size, "batch_size")
    beta = positive_float(noise_precision, "noise_precision")
    if isinstance(prior_precision, bool) or not isinstance(prior_precision, (int, float)):
        raise TypeError("prior_precision must be a float >= 0")
    if not prior_precision >= 0:
        raise ValueError(f"prior_precision must be >= 0; got {prior_precision!r}")
    if preconditioner is None:
        H = np.eye(P)
    else:
        H = check.as_numpy(check.spd(preconditioner, "preconditioner"))
    check.same_size(P, torch.as_tensor(H), "preconditioner")
    Q = np.zeros((P, P)) if injected is None else check.as_numpy(check.psd(injected, "injected"))
    check.same_size(P, torch.as_tensor(Q), "injected")
    x = check.as_numpy(X)
    Ax = x.T @ x / N
    K = eps * H
    M = np.eye(P) - K @ (beta * Ax + prior_precision / N * np.eye(P))
    outer = np.einsum("ni,nj->nij", x, x).reshape(N, P * P)
    F = outer.T @ outer / N  # (1/N) sum_n (x x^T) kron (x x^T), acting on row-major vec
    op = np.kron(M, M) + beta**2 / S * np.kron(K, K) @ (F - np.kron(Ax, Ax))
    rhs = (K @ check.as_numpy(C) @ K.T / S + Q).reshape(-1)
    if float(np.abs(np.linalg.eigvals(op)).max()) >= 1:
        raise ValueError(f"eps: the second moment of SGD diverges at eps = {eps:.4g}")
    sigma = np.linalg.solve(np.eye(P * P) - op, rhs).reshape(P, P)
    sigma = (sigma + sigma.T) / 2
    return torch.as_tensor(sigma, dtype=X.dtype, device=X.device)
