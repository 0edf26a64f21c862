"""Floating-point operation counts of dense linear algebra: complexity claims without timing.

    import torch
    from blrlib import flops
    out, n = flops.count(torch.linalg.cholesky, torch.eye(300, dtype=torch.float64))
    n  # 300^3 / 3 = 9_000_000

:func:`count` intercepts every tensor operation (a ``TorchDispatchMode``, so autograd's
backward pass is counted too) and adds the textbook count of each product, factorisation and
solve (Golub and Van Loan, Matrix Computations, Sec 1.1, 3.1, 4.2): 2 n k m for an (n, k) by
(k, m) product, Cholesky n^3 / 3, a triangular solve with m right-hand sides n^2 m per
triangle, an LU solve 2 n^3 / 3 + 2 n^2 m, an inverse 2 n^3, each times the batch size
(the counts of torch's ``FlopCounterMode`` for products, plus the factorisations).
Elementwise operations are not counted: they are lower order in every algorithm the book
compares. A count depends only on the shapes that an algorithm touches, so it is the same on
every machine and under any load.

Used in :ref:`conj-gp-ssm` (dense BLR step against message passing).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["count"]

aten = torch.ops.aten


def _batch(shape: Any) -> int:
    return math.prod(shape[:-2]) if len(shape) > 2 else 1


def _mm(a_shape, b_shape, *args) -> int:
    return max(_batch(a_shape), _batch(b_shape)) * 2 * a_shape[-2] * a_shape[-1] * b_shape[-1]


def _addmm(c_shape, a_shape, b_shape, *args) -> int:
    return _mm(a_shape, b_shape)


def _mv(a_shape, b_shape, *args) -> int:
    return 2 * a_shape[-2] * a_shape[-1]


def _cholesky(a_shape, *args) -> int:
    return _batch(a_shape) * a_shape[-1] ** 3 // 3


def _cholesky_solve(b_shape, l_shape, *args) -> int:
    n, m = l_shape[-1], b_shape[-1]
    return max(_batch(b_shape), _batch(l_shape)) * 2 * n * n * m  # two triangular solves


def _cholesky_inverse(l_shape, *args) -> int:
    return _batch(l_shape) * 2 * l_shape[-1] ** 3 // 3  # invert L, then L^-T L^-1


def _inverse(a_shape, *args) -> int:
    return _batch(a_shape) * 2 * a_shape[-1] ** 3


def _lu_solve(a_shape, b_shape, *args) -> int:
    n = a_shape[-1]
    m = b_shape[-1] if len(b_shape) == len(a_shape) else 1
    return max(_batch(a_shape), _batch(b_shape)) * (2 * n**3 // 3 + 2 * n * n * m)


def _triangular_solve(a_shape, b_shape, *args) -> int:
    # linalg_solve_triangular(A, B): A (n, n), B (n, m)
    n, m = a_shape[-1], b_shape[-1]
    return max(_batch(a_shape), _batch(b_shape)) * n * n * m


FORMULAS = {
    aten.mm: _mm,
    aten.bmm: _mm,
    aten.addmm: _addmm,
    aten.baddbmm: _addmm,
    aten.mv: _mv,
    aten.linalg_cholesky_ex: _cholesky,
    aten.cholesky_solve: _cholesky_solve,
    aten.cholesky_inverse: _cholesky_inverse,
    aten.linalg_inv_ex: _inverse,
    aten._linalg_solve_ex: _lu_solve,
    aten.linalg_solve_triangular: _triangular_solve,
}
"""The count of each operator, a function of its arguments' shapes (keyed by aten packet)."""


class _Counter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        formula = FORMULAS.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*(a.shape if isinstance(a, Tensor) else a for a in args))
        return func(*args, **(kwargs or {}))


def count(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, int]:
    """Run ``fn(*args, **kwargs)`` and count its floating-point operations.

    Returns:
        (the result of ``fn``, the number of floating-point operations).

    Raises:
        TypeError: ``fn`` is not callable.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    with _Counter() as mode:
        out = fn(*args, **kwargs)
    return out, int(mode.total)
