"""binary_enumeration's pieces against brute force: settings trained together or apart, the mode's
excess loss and the index of a sign vector."""

from __future__ import annotations

import math

import torch
from torch.testing import assert_close

from blrlib import enumeration
from blrlib.experiments import binary_enumeration

F64 = torch.float64


def test_settings_trained_together_equal_settings_trained_apart():
    """_fit_sets puts each setting in its own parameter group: STE (deterministic) trained on
    two learning rates at once gives what two separate runs give."""
    X, y = binary_enumeration._enum_data([0, 1, 2], 6)
    grid = [{"lr": 0.1}, {"lr": 0.3}]
    together = binary_enumeration._fit_sets("ste", X, y, grid, steps=20, seed=0)
    for hp, lam in zip(grid, together, strict=True):
        alone = binary_enumeration._fit_sets("ste", X, y, [hp], steps=20, seed=0)[0]
        assert_close(lam, alone, rtol=0, atol=1e-12)


def test_mode_excess_and_index_against_brute_force():
    """The excess loss of sign(lam) (sign(0) = +1) looked up in the table equals the loss
    recomputed at that sign vector minus the table's minimum."""
    X, y = binary_enumeration._enum_data([3, 4], 5)
    thetas = enumeration.sign_vectors(5, dtype=F64)
    L = binary_enumeration._tables(X, y, thetas)
    lam = torch.tensor([[0.0, -1.0, 2.0, -0.5, 0.3], [-1.0, 1.0, 0.0, 0.2, -0.1]], dtype=F64)
    signs = torch.where(lam >= 0, 1.0, -1.0).to(F64)
    assert torch.equal(thetas[binary_enumeration._index(signs)], signs)
    for s in range(2):
        logits = binary_enumeration.ENUM["scale"] * X[s] @ signs[s] / math.sqrt(5)
        direct = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[s], reduction="sum")
        assert_close(binary_enumeration._mode_excess(L, lam)[s], direct - L[s].min())
