"""VON on Bayesian linear regression: the exact posterior mean, and the mean-field variance."""

from __future__ import annotations

import torch
from torch import nn
from torch.testing import assert_close

from blrlib import optim
from tests import scenarios


def test_von_converges_to_the_posterior_of_linear_regression():
    """The optimal diagonal Gaussian for a Gaussian posterior N(m*, S*^-1) has mean m* and
    precision diag(S*) (mean-field VI); VON's reparameterisation Hessian is unbiased for it.

    Full batch, 4000 steps, then lr and beta decayed: the mean to 2 % of |m*| (the noise of one
    draw per step averages out under beta = 1e-3) and the precision to 10 % of diag(S*).
    """
    noise, delta = 0.5, 2.0
    X, y, _, mean, cov = scenarios.ridge(n=200, dim=3, delta=delta, noise=noise)
    exact_prec = 1.0 / torch.diagonal(torch.linalg.inv(cov))  # not the target: diag(S*) is
    target_prec = torch.diagonal(X.T @ X) / noise**2 + delta
    model = nn.Linear(3, 1, bias=False).double()
    opt = optim.VON(model.parameters(), n_data=200, lr=0.1, beta=0.01, gamma=0.0,
                    prior_prec=delta, generator=torch.Generator().manual_seed(0))  # fmt: skip
    for it in range(4000):
        if it == 2000:
            for g in opt.param_groups:
                g["lr"], g["beta"] = 0.02, 1e-3
        opt.zero_grad()
        with opt.sampled_params(train=True):
            loss = 0.5 * ((model(X).squeeze(1) - y) ** 2).mean() / noise**2
            loss.backward()
        opt.step()
    assert_close(model.weight.detach().squeeze(0), mean, rtol=0.02, atol=0.0)
    prec = opt.precision(model.weight).squeeze(0)
    assert_close(prec, target_prec, rtol=0.10, atol=0.0)
    assert (prec >= exact_prec * 0.9).all()  # mean field is over-confident, never under


def test_positive_correction_keeps_precision_positive():
    """With positive=True s stays > 0 under a large beta, where the plain Eq 37 step fails."""
    model = nn.Linear(4, 1).double()
    X = torch.randn(64, 4)
    opt = optim.VON(model.parameters(), n_data=64, lr=0.05, beta=0.9, prior_prec=1e-3)
    for _ in range(200):
        opt.zero_grad()
        with opt.sampled_params(train=True):
            torch.cos(3 * model(X)).mean().backward()  # a non-convex loss: h_hat often < 0
        opt.step()
        assert all((opt.precision(p) > 0).all() for p in model.parameters())
