"""Operation counts: the textbook formulas on known shapes, and counts that scale as claimed."""

from __future__ import annotations

import pytest
import torch

from blrlib import flops

F64 = torch.float64


def test_counts_of_known_operations() -> None:
    a, b = torch.randn(30, 20, dtype=F64), torch.randn(20, 7, dtype=F64)
    spd = torch.eye(60, dtype=F64) * 3.0
    assert flops.count(torch.mm, a, b)[1] == 2 * 30 * 20 * 7
    assert flops.count(torch.mv, a, b[:, 0])[1] == 2 * 30 * 20
    assert flops.count(torch.linalg.cholesky, spd)[1] == 60**3 // 3
    assert flops.count(torch.linalg.inv, spd)[1] == 2 * 60**3
    batched = spd.expand(4, 60, 60)
    assert flops.count(torch.linalg.cholesky, batched)[1] == 4 * 60**3 // 3
    chol = torch.linalg.cholesky(spd)
    rhs = torch.randn(60, 5, dtype=F64)
    assert flops.count(torch.cholesky_solve, rhs, chol)[1] == 2 * 60 * 60 * 5
    # elementwise work is not counted
    assert flops.count(torch.exp, a)[1] == 0


def test_count_returns_the_result_and_scales_cubically_for_a_dense_solve() -> None:
    def solve(n: int) -> torch.Tensor:
        return torch.linalg.solve(torch.eye(n, dtype=F64) * 2.0, torch.ones(n, 1, dtype=F64))

    out, small = flops.count(solve, 50)
    _, large = flops.count(solve, 100)
    torch.testing.assert_close(out, torch.full((50, 1), 0.5, dtype=F64))
    assert 7.5 < large / small < 8.1  # 2 n^3 / 3 dominates 2 n^2: a ratio of 2^3
    with pytest.raises(TypeError, match="fn"):
        flops.count(3)
