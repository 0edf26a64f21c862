"""The BLR with the spike-and-slab candidate and the dropout estimator is dropout (Sec 4.3).

* Fixed precision s: the step is SGD with dropout (Eq 40), pinned against ``torch.nn.Dropout``
  + ``torch.optim.SGD`` with the same masks for 100 steps. Conventions: Eq 39 keeps units with
  unscaled masks z, theta~ = z * m, while torch multiplies kept activations by 1 / pi1 at
  training time. Torch's weights are therefore W = pi1 m, the mixture's mean E_q[theta] = mu1
  (which is why torch needs no rescaling at test time), and its gradient is
  dL/dW = (1 / pi1) z grad L(theta~); SGD with lr = rho pi1 / s then moves m = W / pi1 by
  rho / (s pi1) z grad L(theta~): Eq 42 at fixed S = s I, whose 1 / pi1 is App E's
  grad_{mu1} = (1 / pi1) grad_m.
* Free precision: the step is Eq 42-43, written out here independently of the engine.

Float64 throughout; the two sides do the same arithmetic in a different order, so they agree to
rounding (1e-10 after 100 steps).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from blrlib import blr, families

F64 = torch.float64
N, D_IN, J, K = 12, 3, 5, 2


def _features():
    """Fixed hidden features h (N, J) of a frozen first layer, and labels; theta = the last
    layer's weights W (K, J), unit j's outgoing weights being column j (Eq 39)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D_IN, generator=g, dtype=F64)
    h = torch.tanh(x @ torch.randn(D_IN, J, generator=g, dtype=F64))
    return h, torch.randint(0, K, (N,), generator=g)


def _loss(h, y, i):
    """theta (J * K,), unit-major (theta.view(J, K)[j] = W[:, j]) -> the mean loss of examples
    ``i`` (an int or a slice)."""
    rows = slice(i, i + 1) if isinstance(i, int) else i

    def loss(theta):
        return nn.functional.cross_entropy(h[rows] @ theta.view(J, K), y[rows])

    return loss


@pytest.mark.parametrize("pi1", [0.5, 0.8, 1.0])
def test_fixed_precision_blr_is_torch_dropout_sgd(pi1):
    """Eq 40: 100 BLR steps (fixed S = s I, dropout estimator) = torch Dropout + SGD."""
    h, y = _features()
    s, rho = 2.0, 0.3
    q = families.SpikeSlab(pi1, 1e4, n_units=J, unit_dim=K, precision=s, dtype=F64)
    m0 = 0.1 * torch.randn(J, K, dtype=F64)
    lam = q.natural_from_moments(m0)
    net = nn.Sequential(nn.Dropout(1 - pi1), nn.Linear(J, K, bias=False, dtype=F64))
    with torch.no_grad():
        net[1].weight.copy_(pi1 * m0.T)  # W = pi1 m = E_q[theta]
    sgd = torch.optim.SGD(net.parameters(), lr=rho * pi1 / s)
    for t in range(100):
        i = t % N
        torch.manual_seed(1000 + t)  # the mask nn.Dropout draws: bernoulli_(pi1) of (1, J)
        z = torch.empty(1, J, dtype=F64).bernoulli_(pi1)[0]
        lam = blr.step(q, lam, _loss(h, y, i), rho=rho, estimator="dropout", masks=z)
        torch.manual_seed(1000 + t)
        sgd.zero_grad()
        nn.functional.cross_entropy(net(h[i : i + 1]), y[i : i + 1]).backward()
        sgd.step()
    m, _ = q.mean_cov(lam)
    assert_close(net[1].weight.detach() / pi1, m.T, rtol=0, atol=1e-10)
    assert (m - m0).abs().max() > 0.1  # the iterates moved: the comparison is not vacuous


def test_free_precision_blr_is_eq42_eq43():
    """Eq 42-43 per unit: S <- (1 - rho) S + rho H(theta~) / pi1, m <- m - rho S^-1 g / pi1."""
    h, y = _features()
    pi1, rho = 0.7, 0.2
    q = families.SpikeSlab(pi1, 1e4, n_units=J, unit_dim=K, dtype=F64)
    m = 0.1 * torch.randn(J, K, dtype=F64)
    prec = torch.eye(K, dtype=F64).repeat(J, 1, 1)
    lam = q.natural_from_moments(m, prec)
    gen = torch.Generator().manual_seed(2)
    for t in range(10):
        loss = _loss(h, y, slice(None)) if t % 2 else _loss(h, y, t)
        z = torch.bernoulli(torch.full((J,), pi1, dtype=F64), generator=gen)
        lam = blr.step(q, lam, loss, rho=rho, estimator="dropout", masks=z)
        zf = z.repeat_interleave(K)

        def masked(theta):
            return loss(zf * theta)  # noqa: B023

        g = torch.func.grad(masked)(m.reshape(-1)).view(J, K)
        hess = torch.func.hessian(masked)(m.reshape(-1)).view(J, K, J, K)
        blocks = torch.stack([hess[j, :, j, :] for j in range(J)])
        prec = (1 - rho) * prec + rho * blocks / pi1
        m = m - rho * torch.linalg.solve(prec, g.unsqueeze(-1)).squeeze(-1) / pi1
        m_blr, cov = q.mean_cov(lam)
        assert_close(m_blr, m, rtol=0, atol=1e-10)
        assert_close(torch.linalg.inv(cov), prec, rtol=1e-10, atol=1e-10)


def test_masks_drawn_from_the_generator_are_reproducible():
    h, y = _features()
    q = families.SpikeSlab(0.5, 1e4, n_units=J, unit_dim=K, precision=1.0, dtype=F64)
    lam = q.natural_from_moments(torch.ones(J, K, dtype=F64))
    a, b = (
        blr.step(q, lam, _loss(h, y, 0), rho=0.5, estimator="dropout",
                 generator=torch.Generator().manual_seed(4))
        for _ in range(2)
    )  # fmt: skip
    assert_close(a[0], b[0], rtol=0, atol=0)
