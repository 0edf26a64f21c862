"""Each blrlib.optim optimizer is one blr.step (DiagGaussian + its estimator) and the recursion
the paper states (Eq 36-38, 44-46, App F); agreement is to rounding: 1e-10 in float64, and
1e-4 in float32 for the tests that also run there (``float_dtype``, see tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from blrlib import blr, families, optim
from tests.conftest import rounding
from tests.optim._models import flat, per_example_ce, problem

N, DELTA, RHO = 24, 2.0, 0.3


def _engine_start(opt, model):
    q = families.DiagGaussian(flat(model).numel(), dtype=flat(model).dtype)
    s = torch.cat([opt.precision(p).reshape(-1) for p in model.parameters()])
    return (
        q,
        q.natural_from_moments(flat(model), s),
        (torch.zeros_like(s), torch.full_like(s, -DELTA / 2)),
    )


def _opt_precision(opt, model):
    return torch.cat([opt.precision(p).reshape(-1) for p in model.parameters()])


CASES = {  # optimizer class and options -> the engine's estimator and Hessian
    "newton": (optim.Newton, dict(hess_init=1.0), "delta", "autograd"),
    "ogn": (optim.OGN, dict(hess_init=1.0, beta=RHO), "delta", "gauss_newton"),
    "vogn": (optim.VOGN, dict(hess_init=1.0, beta=RHO), "mc", "gauss_newton"),
    "von": (optim.VON, dict(hess_init=1.0, beta=RHO, gamma=0.0, positive=False), "mc", "reparam"),
}


@pytest.mark.parametrize("name", CASES)
def test_step_is_blr_step(name, float_dtype):
    """(a) Three optimizer steps equal three blr.step calls with the same draws."""
    cls, options, estimator, hessian = CASES[name]
    model, x, y, loss = problem(N, dtype=float_dtype)
    tol = rounding(float_dtype)
    kw = dict(model=model, loss_fn=per_example_ce) if cls is not optim.VON else {}
    gen = torch.Generator().manual_seed(1)
    if cls is optim.VON:
        kw["generator"] = gen
    opt = cls(model.parameters(), n_data=N, lr=RHO, prior_prec=DELTA, **options, **kw)
    if cls is optim.VOGN:
        opt.generator = gen
    q, lam, prior = _engine_start(opt, model)
    engine_gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        opt.zero_grad()
        with opt.sampled_params(train=True):
            if cls is optim.VON:
                per_example_ce(model(x), y).mean().backward()
            else:
                opt.backward(x, y)
        opt.step()
        lam = blr.step(
            q, lam, loss, rho=RHO, estimator=estimator, hessian=hessian, prior=prior,
            generator=engine_gen, n_samples=1,
        )  # fmt: skip
        m, var = q.mean_cov(lam)
        assert flat(model).dtype == m.dtype == float_dtype
        assert_close(flat(model), m, rtol=0, atol=tol)
        assert_close(_opt_precision(opt, model), 1 / var, rtol=tol, atol=0)


def test_eq36_separate_rates():
    """Eq 36: s <- (1 - beta) s + beta (N diag H + delta), m <- m - alpha (N g + delta m) / s."""
    model, x, y, loss = problem(N)
    alpha, beta = 0.2, 0.05
    opt = optim.Newton(model.parameters(), n_data=N, lr=alpha, beta=beta, prior_prec=DELTA,
                       hess_init=0.5, model=model, loss_fn=per_example_ce)  # fmt: skip
    m, s = flat(model), torch.full((flat(model).numel(),), N * 0.5 + DELTA)
    for _ in range(4):
        g = torch.func.grad(loss)(m) + DELTA * m
        h = torch.diagonal(torch.func.hessian(loss)(m)) + DELTA
        s = (1 - beta) * s + beta * h
        m = m - alpha * g / s
        opt.zero_grad()
        opt.backward(x, y)
        opt.step()
        assert_close(flat(model), m, rtol=0, atol=1e-10)
        assert_close(_opt_precision(opt, model), s, rtol=1e-10, atol=0)


def test_app_f_natural_momentum_is_eq80():
    """App F, Eq 80: lam_{t+1} = blr.step(lam_t) + gamma (lam_t - lam_{t-1}), here for OGN."""
    model, x, y, loss = problem(N)
    gamma = 0.3
    opt = optim.OGN(
        model.parameters(), n_data=N, lr=RHO, beta=RHO, gamma=gamma, prior_prec=DELTA,
        hess_init=0.1, model=model, loss_fn=per_example_ce,
    )  # fmt: skip
    q, lam, prior = _engine_start(opt, model)
    prev = lam
    for _ in range(5):
        new = blr.step(q, lam, loss, rho=RHO, estimator="delta", hessian="gauss_newton",
                       prior=prior)  # fmt: skip
        new = tuple(a + gamma * (b - c) for a, b, c in zip(new, lam, prev, strict=True))
        prev, lam = lam, new
        opt.zero_grad()
        opt.backward(x, y)
        opt.step()
        m, var = q.mean_cov(lam)
        assert_close(flat(model), m, rtol=0, atol=1e-10)
        assert_close(_opt_precision(opt, model), 1 / var, rtol=1e-10, atol=0)


@pytest.mark.parametrize("reference", ["adam", "rmsprop"])
def test_eq38_is_torch_adam_and_rmsprop(reference, float_dtype):
    """Eq 38 (+ Eq 77 momentum, bias correction) is torch's Adam; without momentum, RMSprop."""
    model, x, y, _ = problem(N, dtype=float_dtype)
    twin, _, _, _ = problem(N, dtype=float_dtype)
    if reference == "adam":
        opt = optim.AdamLike(model.parameters(), n_data=N, lr=0.01, prior_prec=DELTA)
        ref = torch.optim.Adam(twin.parameters(), lr=0.01, weight_decay=DELTA / N)
    else:
        opt = optim.AdamLike(model.parameters(), n_data=N, lr=0.01, betas=(0.0, 0.99),
                             prior_prec=DELTA, bias_correction=False)  # fmt: skip
        ref = torch.optim.RMSprop(twin.parameters(), lr=0.01, alpha=0.99, eps=1e-8,
                                  weight_decay=DELTA / N)  # fmt: skip
    for _ in range(20):
        for o, net in ((opt, model), (ref, twin)):
            o.zero_grad()
            per_example_ce(net(x), y).mean().backward()
            o.step()
    assert flat(model).dtype == float_dtype
    assert_close(flat(model), flat(twin), rtol=0, atol=rounding(float_dtype))


def test_eq36_absolute_hessian_is_the_mean_of_per_example_absolute_diagonals():
    """Newton(absolute=True): h_hat = (1/M) sum_i |diag grad^2 ell_i|, computed here one example
    at a time with torch.func.hessian of the flat loss; it bounds |Eq 37's diagonal| from
    above (triangle inequality), so beta = 1 gives s = N h_hat + delta >= delta."""
    model, x, y, loss = problem(N)
    theta = flat(model)

    def diag(i):  # the Hessian diagonal of example i's loss
        return torch.diagonal(torch.func.hessian(lambda t: loss.per_example(t)[i])(theta))

    per = torch.stack([diag(i) for i in range(N)])
    opt = optim.Newton(model.parameters(), n_data=N, lr=RHO, beta=1.0, prior_prec=DELTA,
                       model=model, loss_fn=per_example_ce, absolute=True)  # fmt: skip
    opt.backward(x, y)
    opt.step()
    expected = N * per.abs().mean(0) + DELTA
    assert_close(_opt_precision(opt, model), expected, rtol=1e-10, atol=0)
    assert (per.mean(0) < 0).any()  # the plain diagonal is negative somewhere here
    assert (expected >= N * per.mean(0).abs() + DELTA - 1e-12).all()


def test_eq36_equals_eq37_when_every_example_is_convex():
    """Logistic regression: each ell_i has diagonal p_i (1 - p_i) x_ij^2 >= 0, so |.| is moot."""
    g = torch.Generator().manual_seed(0)
    X, t = torch.randn(30, 3, generator=g), torch.randint(0, 2, (30,), generator=g).double()

    def bce(f, v):
        return torch.nn.functional.binary_cross_entropy_with_logits(f[:, 0], v, reduction="none")

    precisions = []
    for absolute in (False, True):
        torch.manual_seed(0)
        net = torch.nn.Linear(3, 1, bias=False).double()
        opt = optim.Newton(net.parameters(), n_data=30, beta=1.0, model=net, loss_fn=bce,
                           absolute=absolute)  # fmt: skip
        opt.backward(X, t)
        opt.step()
        precisions.append(opt.precision(net.weight))
    assert_close(precisions[1], precisions[0], rtol=1e-12, atol=0)
    with pytest.raises(TypeError, match="absolute"):
        optim.Newton(net.parameters(), n_data=30, absolute=1)
