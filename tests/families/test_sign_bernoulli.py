"""The {-1, +1} Bernoulli (Sec 4.5) and its Concrete relaxation (Eq 50-51).

Exact identities at float64 defaults of ``assert_close``; Monte Carlo checks as z-scores against
5 standard errors estimated from the same draws.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.distributions as D
from torch.testing import assert_close

from blrlib import estimators
from blrlib.families import SignBernoulli
from blrlib.families.sign_bernoulli import log_sech2, relaxed_scale

F64 = torch.float64
P = 3


def _lam() -> tuple[torch.Tensor]:
    return (torch.randn(P, dtype=F64),)


def _ref(lam) -> D.Distribution:
    """The same q as a {0, 1} torch Bernoulli of b = (theta + 1) / 2 with p = sigmoid(2 lam)."""
    return D.Independent(D.Bernoulli(probs=torch.sigmoid(2 * lam[0])), 1)


def _all_signs(p: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([-1.0, 1.0], repeat=p)), dtype=F64)


def test_parametrisation_and_round_trip():
    """lam = 1/2 log(p / (1 - p)), mu = 2p - 1 = tanh(lam); grad A = mu; lam -> mu -> lam."""
    q, lam = SignBernoulli(P, dtype=F64), _lam()
    p = q.probs(lam)
    assert_close(lam[0], 0.5 * torch.log(p / (1 - p)))
    assert_close(q.to_expectation(lam)[0], 2 * p - 1)
    assert_close(q.to_natural(q.to_expectation(lam))[0], lam[0])
    leaf = lam[0].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(q.log_partition((leaf,)), leaf)
    assert_close(grad, torch.tanh(lam[0]))


def test_log_prob_entropy_kl_match_torch():
    q, lam, other = SignBernoulli(P, dtype=F64), _lam(), _lam()
    theta = _all_signs(P)
    assert_close(q.log_prob(lam, theta), _ref(lam).log_prob((theta + 1) / 2))
    assert_close(q.log_prob(lam, theta).exp().sum(), torch.tensor(1.0, dtype=F64))
    assert_close(q.entropy(lam), _ref(lam).entropy())
    assert_close(q.kl(lam, other), D.kl_divergence(_ref(lam), _ref(other)))


def test_neg_entropy_natural_gradient_is_lam():
    """App B: grad_mu (-H(q(mu))) = lam, since h is constant."""
    q, lam = SignBernoulli(P, dtype=F64), _lam()
    mu = q.to_expectation(lam)[0].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(-q.entropy(q.to_natural((mu,))), mu)
    assert_close(grad, q.neg_entropy_natural_gradient(lam)[0])


def test_samples_and_relaxed_limit_within_five_standard_errors():
    """Exact draws and sign(lam + delta) (the tau -> 0 Concrete draw) both have mean tanh(lam)."""
    q, lam, n = SignBernoulli(P, tau=1e-3, dtype=F64), _lam(), 40_000
    gen = torch.Generator().manual_seed(1)
    exact = q.sample(lam, n, generator=gen)
    assert_close(exact.abs(), torch.ones_like(exact))
    relaxed = q.relaxed_sample(lam, n, generator=gen)
    for draws in (exact, torch.sign(relaxed)):
        z = (draws.mean(0) - torch.tanh(lam[0])) / (draws.std(0) / n**0.5)
        assert_close(z, torch.zeros_like(z), rtol=0, atol=5.0)
    with pytest.raises(NotImplementedError, match="relaxed_sample"):
        q.rsample(lam, 2)


def test_scale_is_the_jacobian_of_the_relaxation():
    """Eq 51: s = d theta_hat / d mu, by autograd through theta_hat(atanh(mu)) (float64)."""
    for tau in (1.0, 0.3, 0.05):
        lam = (torch.randn(P, dtype=F64),)
        delta = SignBernoulli(P, dtype=F64).noise(1)[0]
        mu = torch.tanh(lam[0]).requires_grad_(True)
        theta = torch.tanh((torch.atanh(mu) + delta) / tau)
        jac = torch.autograd.grad(theta.sum(), mu)[0]  # diagonal: one mu per theta
        assert_close(relaxed_scale(lam[0], delta, tau), jac, rtol=1e-9, atol=1e-12)


def test_scale_is_finite_where_the_direct_formula_is_zero_over_zero():
    """In float32, 1 - tanh(x)^2 underflows to 0 for |x| > 9: log space keeps s exact."""
    x = torch.tensor([0.0, 5.0, 30.0, 1e12], dtype=torch.float32)
    assert_close(log_sech2(x), log_sech2(x.double()).float())
    lam = torch.tensor([12.0, 12.0], dtype=torch.float32)
    delta = torch.tensor([-12.0 + 1e-11, 0.5], dtype=torch.float32)
    s = relaxed_scale(lam, delta, 1e-10)
    assert torch.isfinite(s).all()
    # the second draw is far from the threshold: the exact s is exp(-1e10) = 0
    assert s[1] == 0
    direct = (1 - torch.tanh((lam + delta) / 1e-10) ** 2) / (1e-10 * (1 - torch.tanh(lam) ** 2))
    assert not torch.isfinite(direct).any()  # x / 0 and 0 / 0 in the direct formula


def test_noise_free_limit_gives_ste_gradient_at_an_exponential_rate():
    """Eq 52 with delta = 0: theta = tanh(lam / tau) -> sign(lam) as tau -> 0, and so does the
    gradient at theta, with error ~ exp(-2 min|lam| / tau); the slope of log(error) against
    1/tau is -2 min|lam| (to 5 %). The scale s -> 0 at the same kind of rate, so Eq 52's step
    vanishes: STE keeps the gradient and replaces s by 1 (the delta method's Jacobian)."""
    lam = torch.tensor([0.8, -0.5, 1.3], dtype=F64)
    w = torch.tensor([0.7, -1.1, 0.4], dtype=F64)

    def loss(theta):
        return torch.log1p(torch.exp(-(theta * w).sum() * theta[0])) + (theta**3).sum()

    g_ste = torch.func.grad(loss)(torch.sign(lam))
    inv_tau = torch.tensor([4.0, 6.0, 8.0, 10.0, 12.0], dtype=F64)
    errors = torch.stack(
        [(torch.func.grad(loss)(torch.tanh(lam * t)) - g_ste).abs().max() for t in inv_tau]
    )
    slope = torch.diff(errors.log()) / torch.diff(inv_tau)
    expected = torch.full_like(slope, -2 * lam.abs().min().item())
    assert_close(slope, expected, rtol=0.05, atol=0)
    s = torch.stack([relaxed_scale(lam, torch.zeros(P, dtype=F64), 1 / t).max() for t in inv_tau])
    assert (torch.diff(s) < 0).all() and s[-1] < 1e-3


def _exact_natural_gradient(loss, lam):
    """grad_mu E_q[loss] by enumeration: E_q[loss] = sum_theta loss(theta) prod (1 + mu theta)/2."""
    theta = _all_signs(P)
    mu = torch.tanh(lam[0]).requires_grad_(True)
    probs = ((1 + mu * theta) / 2).prod(-1)
    return torch.autograd.grad((probs * torch.vmap(loss)(theta)).sum(), mu)[0]


def test_relaxed_estimator_approaches_the_exact_natural_gradient():
    """Eq 51 is biased at tau > 0; its mean approaches the enumerated grad_mu E_q[loss] as
    tau -> 0 (while its variance grows like 1/tau). Mean over 100k draws: at tau = 1 it misses
    by more than 0.3 beyond 5 standard errors; at tau = 0.05 it is within 5 standard errors
    (the bias, about 0.01 there, is below the Monte Carlo error)."""
    lam = (torch.tensor([0.3, -0.6, 0.1], dtype=F64),)
    w = torch.tensor([[0.0, 1.0, -0.5], [1.0, 0.0, 0.8], [-0.5, 0.8, 0.0]], dtype=F64)

    def loss(theta):
        return theta @ w @ theta + torch.tanh(theta).sum()

    exact = _exact_natural_gradient(loss, lam)
    gaps = []
    for tau in (1.0, 0.05):
        q = SignBernoulli(P, tau=tau, dtype=F64)
        gen = torch.Generator().manual_seed(2)
        delta = q.noise(100_000, generator=gen)
        theta = torch.tanh((lam[0] + delta) / tau)
        s = relaxed_scale(lam[0], delta, tau)
        per_draw = s * torch.vmap(torch.func.grad(loss))(theta)
        se = per_draw.std(0) / per_draw.shape[0] ** 0.5
        gaps.append(((per_draw.mean(0) - exact).abs() - 5 * se).clamp_min(0).max())
        # the engine's estimator is the same function of the same draws
        engine = estimators.natural_gradient(
            q, lam, loss, estimator="mc", n_samples=50, generator=torch.Generator().manual_seed(2)
        )[0]
        assert_close(engine, per_draw[:50].mean(0))
    assert gaps[0] > 0.3  # tau = 1: a visible bias
    assert_close(gaps[1], torch.zeros((), dtype=F64), rtol=0, atol=0)


def test_delta_estimator_is_the_gradient_at_the_sign():
    q, lam = SignBernoulli(P, dtype=F64), _lam()
    w = torch.randn(P, dtype=F64)

    def loss(theta):
        return torch.sin(theta @ w) + (theta**2).sum()

    grad = estimators.natural_gradient(q, lam, loss, estimator="delta")[0]
    assert_close(grad, torch.func.grad(loss)(torch.sign(lam[0])))


@pytest.mark.parametrize("tau", [0.0, -1.0, math.inf, math.nan])
def test_bad_tau_and_bad_parameters(tau):
    with pytest.raises(ValueError, match="tau"):
        SignBernoulli(P, tau=tau)
    q = SignBernoulli(P, dtype=F64)
    with pytest.raises(ValueError, match="lam"):
        q.check_natural((torch.full((P,), math.inf, dtype=F64),))
    with pytest.raises(ValueError, match="mu"):
        q.check_expectation((torch.ones(P, dtype=F64),))
    with pytest.raises(TypeError, match="tau"):
        SignBernoulli(P, tau="0.1")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_regularised_scale_is_the_reference_formula_in_both_dtypes(dtype):
    """eps > 0: s = (sech^2(x) + eps) / (tau (sech^2(lam) + eps)), x = (lam + delta) / tau.
    At tau = eps = 1e-10 and a draw far from the threshold, sech^2(x) = 0 and s is
    1 / (sech^2(lam) + 1e-10): about 1 / (1 - mu^2) for |lam| < 9, up to 1e10 beyond. The
    reference is that closed form in float64 with sech^2 = 1 / cosh^2 (no cancellation);
    float32 agrees to its rounding (rtol 1e-5), where 1 - tanh(lam)^2 would be 0 for
    |lam| > 9 and give 1e10 instead."""
    lam64 = torch.tensor([0.0, 1.0, -3.0, 8.0, 12.0, -30.0], dtype=F64)
    delta64 = torch.tensor([0.7, -0.2, -1.1, 0.4, 0.3, 2.0], dtype=F64)
    expected = 1.0 / (1.0 / torch.cosh(lam64) ** 2 + 1e-10)
    s = relaxed_scale(lam64.to(dtype), delta64.to(dtype), 1e-10, eps=1e-10)
    assert s.dtype == dtype and torch.isfinite(s).all()
    assert_close(s.double(), expected, rtol=1e-5, atol=0)
    # at a moderate tau the regulariser moves Eq 51's s by at most eps / (tau sech^2(lam))
    # plus a relative eps / sech^2(lam) (expanding both parts to first order in eps)
    lam, delta = 2 * torch.randn(50, dtype=F64), SignBernoulli(50, dtype=F64).noise(1)[0]
    exact, reg = relaxed_scale(lam, delta, 0.1), relaxed_scale(lam, delta, 0.1, eps=1e-10)
    sech2 = 1.0 / torch.cosh(lam) ** 2
    bound = 1e-10 / (0.1 * sech2) + 1e-10 / sech2 * exact
    assert ((reg - exact).abs() <= 1.01 * bound).all()


def test_exact_scale_at_tiny_tau_is_zero_for_almost_every_draw_with_mean_near_one():
    """Eq 51's s as tau -> 0: 0 for almost every draw, yet its mean tends to 1 (delta has
    density sech^2(delta) / 2, and sech^2(u / tau) / tau integrates to 2, so E[s] ->
    (sech^2(lam) / 2) * 2 / sech^2(lam)). At tau = 1e-3, 200k draws: at most 1 % of draws
    give s > 1e-6, and the mean is 1 within 5 standard errors; at tau = 1e-10 every draw
    gives 0: an unbiased estimator whose variance grows like 1 / tau."""
    lam = torch.full((200_000,), 0.4, dtype=F64)
    gen = torch.Generator().manual_seed(3)
    delta = SignBernoulli(200_000, dtype=F64).noise(1, generator=gen)[0]
    s = relaxed_scale(lam, delta, 1e-3)
    assert (s > 1e-6).double().mean() < 0.01
    se = s.std() / len(s) ** 0.5
    assert abs(float(s.mean()) - 1.0) < 5 * float(se)
    assert float(relaxed_scale(lam, delta, 1e-10).max()) == 0.0
