"""Averages of constant-SGD iterates: Polyak averaging and one-window means (Mandt et al. 2017).

    cov = sgd_bayes.polyak_covariance(A, C, batch_size=10, n_steps=T)     # large T
    cov = sgd_bayes.window_covariance(A, C, eps=eps, batch_size=10, window=T)  # exact

Derived in :ref:`sgd-averaging`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from blrlib._checks import count
from blrlib.sgd_bayes import _checks as check
from blrlib.sgd_bayes.stationary import stationary_covariance

__all__ = ["polyak_covariance", "window_covariance"]


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
    A = check.spd(A, "A")
    C = check.psd(C, "C")
    check.same_size(A.shape[0], C, "C")
    S, T = count(batch_size, "batch_size"), count(n_steps, "n_steps")
    Ainv = torch.cholesky_inverse(torch.linalg.cholesky(A))
    cov = Ainv @ C @ Ainv / (T * S)
    return (cov + cov.T) / 2


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
        sigma = check.psd(stationary, "stationary")
        check.same_size(A.shape[0], sigma, "stationary")
    P = A.shape[0]
    H = np.eye(P) if preconditioner is None else check.as_numpy(preconditioner)
    KA = check.learning_rate(eps) * H @ check.as_numpy(A)
    M, eye = np.eye(P) - KA, np.eye(P)
    inv = np.linalg.inv(KA)  # (I - M)^-1
    G = T * inv - M @ (eye - np.linalg.matrix_power(M, T)) @ inv @ inv - T * eye
    S = check.as_numpy(sigma)
    cov = (T * S + G @ S + S @ G.T) / T**2
    cov = (cov + cov.T) / 2
    return torch.as_tensor(cov, dtype=A.dtype, device=A.device)
