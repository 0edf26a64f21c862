"""GP regression and the linear-Gaussian state-space model as one BLR step (Sec 5.1, Eq 54).

GP: against ``sklearn.gaussian_process.GaussianProcessRegressor`` with a fixed kernel and
``optimizer=None`` (mean and std to 1e-8; both solve the same well-conditioned float64 systems,
cond(K + s2 I) < 1e4 here, so they agree to ~1e-12). State space: the Kalman/RTS smoother's
marginals equal the dense BLR step's to 1e-10 (two exact algorithms, float64).
"""

from __future__ import annotations

import pytest
import torch
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, Matern
from torch.testing import assert_close

from blrlib import conjugate
from blrlib import linear_gaussian as lg
from blrlib.families import Gaussian
from blrlib.infer import kalman_filter, kalman_smoother

F64 = torch.float64


@pytest.mark.parametrize(
    ("kind", "sk_kernel", "with_test"),
    [
        ("matern12", Matern(length_scale=0.7, nu=0.5, length_scale_bounds="fixed"), True),
        ("rbf", RBF(length_scale=0.7, length_scale_bounds="fixed"), False),
    ],
)
def test_gp_is_one_blr_step(kind: str, sk_kernel, with_test: bool) -> None:
    """The BLR step needs the prior precision K^-1: points at random for the rough Matern-1/2
    kernel (cond K ~ 1e3), on a grid for the smooth RBF kernel (random points make K
    numerically singular, which only the covariance form of sklearn tolerates)."""
    if with_test:
        x = torch.rand(25, 1, dtype=F64) * 6
    else:
        x = torch.linspace(0.0, 12.0, 25, dtype=F64)[:, None]  # cond K ~ 6e3
    y = torch.sin(x[:, 0]) + 0.3 * torch.randn(25, dtype=F64)
    xs = torch.linspace(-0.5, 6.5, 15, dtype=F64)[:, None] if with_test else x[:0]
    allx = torch.cat((x, xs))
    cov = lg.kernel(allx, allx, kind=kind, length_scale=0.7)
    mean, std, _ = lg.gp_posterior(cov, y, noise_var=0.09, n_train=25)
    gpr = GaussianProcessRegressor(kernel=sk_kernel, alpha=0.09, optimizer=None).fit(
        x.numpy(), y.numpy()
    )
    sk_mean, sk_std = gpr.predict(allx.numpy(), return_std=True)
    assert_close(mean, torch.from_numpy(sk_mean), rtol=1e-8, atol=1e-8)
    assert_close(std, torch.from_numpy(sk_std), rtol=1e-8, atol=1e-8)
    # the log evidence of the same BLR posterior equals sklearn's log marginal likelihood
    q = Gaussian(25, dtype=F64)
    prior = q.natural_from_mean_precision(torch.zeros(25), torch.linalg.inv(cov[:25, :25]))
    lik = conjugate.GaussianLikelihood(0.09, design=torch.eye(25))
    post = conjugate.posterior(q, prior, lik, y)
    lml = conjugate.log_marginal_likelihood(q, prior, post, lik, y)
    assert_close(lml, torch.tensor(gpr.log_marginal_likelihood_value_), rtol=1e-8, atol=1e-8)


def _ssm(n_steps: int = 30):
    a = torch.tensor([[1.0, 0.1], [-0.3, 0.9]])
    q_cov = torch.tensor([[0.05, 0.01], [0.01, 0.1]])
    c = torch.tensor([[1.0, 0.0], [0.5, 1.0]])
    r_var = torch.tensor([0.2, 0.5])
    m0, p0 = torch.tensor([0.5, -0.5]), torch.eye(2)
    x, ys = torch.randn(2), []
    for _ in range(n_steps):
        x = a @ x + torch.linalg.cholesky(q_cov) @ torch.randn(2)
        ys.append(c @ x + r_var.sqrt() * torch.randn(2))
    return a, q_cov, c, r_var, m0, p0, torch.stack(ys)


def test_kalman_rts_equals_dense_blr_step() -> None:
    args = _ssm()
    dense_m, dense_p = lg.ssm_dense_posterior(*args)
    m, p = kalman_smoother(*args)
    assert_close(m, dense_m, rtol=1e-10, atol=1e-10)
    assert_close(p, dense_p, rtol=1e-10, atol=1e-10)


def test_kalman_filter_last_step_equals_dense_posterior() -> None:
    """The filter at t = T conditions on all the data: it equals the smoother there."""
    args = _ssm(10)
    fm, fp, _, _ = kalman_filter(*args)
    dense_m, dense_p = lg.ssm_dense_posterior(*args)
    assert_close(fm[-1], dense_m[-1], rtol=1e-10, atol=1e-10)
    assert_close(fp[-1], dense_p[-1], rtol=1e-10, atol=1e-10)


def test_bad_input_raises() -> None:
    a, q_cov, c, r_var, m0, p0, y = _ssm(5)
    with pytest.raises(ValueError, match="y contains non-finite"):
        kalman_smoother(a, q_cov, c, r_var, m0, p0, y.clone().fill_(float("nan")))
    with pytest.raises(ValueError, match="c must have shape"):
        kalman_smoother(a, q_cov, c[:, :1], r_var, m0, p0, y)
    with pytest.raises(ValueError, match="noise_var"):
        kalman_smoother(a, q_cov, c, -r_var, m0, p0, y)
    with pytest.raises(ValueError, match="length_scale"):
        lg.kernel(y, y, length_scale=0.0)
    with pytest.raises(ValueError, match="kind"):
        lg.kernel(y, y, kind="cosine")
    cov = lg.kernel(y, y)
    with pytest.raises(ValueError, match="y must have shape"):
        lg.gp_posterior(cov, torch.zeros(3), noise_var=0.1, n_train=5)
    with pytest.raises(ValueError, match="cov must be symmetric positive definite"):
        lg.gp_posterior(-cov, torch.zeros(5), noise_var=0.1, n_train=5)
