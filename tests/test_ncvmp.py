"""Non-conjugate message passing over mean-field nodes (Sec 5.4, Eq 58 node by node).

The fixed point of the node steps is compared with an independent maximiser of the same ELBO
(L-BFGS and Newton in unconstrained coordinates, to a gradient of 1e-9): they agree to about
1e-9 divided by the smallest curvature, hence 1e-7. Closed forms use 1e-12.
"""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from blrlib import ncvmp

F64 = torch.float64


def _model(n: int = 80) -> ncvmp.ARDLogistic:
    gen = torch.Generator().manual_seed(0)
    X = torch.cat((torch.randn(n, 2, generator=gen, dtype=F64), torch.ones(n, 1, dtype=F64)), 1)
    y = torch.bernoulli(torch.sigmoid(X @ torch.tensor([2.0, 0.0, -0.5], dtype=F64)), generator=gen)
    return ncvmp.ARDLogistic(X, y, a0=2.0, b0=1.0)


def test_fixed_point_is_the_mean_field_optimum_and_the_elbo_rises() -> None:
    model = _model()
    out = ncvmp.run(model, model.init(), n_iter=200, tol=1e-11)
    assert out["converged"]
    best = ncvmp.mean_field_optimum(model, model.init())
    for lam, ref in zip(out["lam"][-1], best, strict=True):
        for a, b in zip(lam, ref, strict=True):
            assert_close(a, b, rtol=0.0, atol=1e-7)
    elbo = torch.tensor(out["elbo"])
    assert (elbo.diff() > -1e-9).all()  # every node step maximises or improves its node
    # the weight whose true value is 0 gets the largest prior precision (ARD)
    assert model.precisions(out["lam"][-1]).argmax() == 1


def test_gamma_node_step_is_the_closed_form_vmp_update() -> None:
    """A conjugate node: one step with rho = 1 is Gamma(a0 + 1/2, b0 + E[w_j^2] / 2)."""
    model = _model()
    lams = ncvmp.run(model, model.init(), n_iter=3)["lam"][-1]
    second = torch.diagonal(model.families[0].to_expectation(lams[0])[1])
    for j in range(1, 4):
        new = ncvmp.node_step(model, lams, j, rho=1.0)[j]
        a, b = model.families[j].shape_rate(new)
        assert_close(a, torch.tensor([2.5], dtype=F64), rtol=0.0, atol=1e-12)
        assert_close(b, 1.0 + 0.5 * second[j - 1 : j], rtol=0.0, atol=1e-12)


def test_unconstrained_round_trip_and_bad_input() -> None:
    model = _model(20)
    lams = ncvmp.run(model, model.init(), n_iter=2)["lam"][-1]
    back = model.from_unconstrained(model.to_unconstrained(lams))
    for lam, ref in zip(back, lams, strict=True):
        for a, b in zip(lam, ref, strict=True):
            assert_close(a, b, rtol=1e-10, atol=1e-10)
    with pytest.raises(TypeError, match="lams"):
        ncvmp.run(model, lams[:-1], n_iter=1)
    with pytest.raises(ValueError, match="tol"):
        ncvmp.run(model, lams, n_iter=1, tol=0.0)
    with pytest.raises(ValueError, match="rho"):
        ncvmp.run(model, lams, n_iter=1, rho=0.0)
    with pytest.raises(ValueError, match="a0"):
        ncvmp.ARDLogistic(model.factors.X, model.factors.y, a0=-1.0)
