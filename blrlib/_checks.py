"""Argument checks shared by blrlib's public functions: each error names the argument."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor


def positive_float(value: object, name: str) -> float:
    """``value`` as a float, if it is a finite real number > 0.

    Raises:
        TypeError: ``value`` is not an int or float (bools excluded).
        ValueError: ``value`` is not finite or not positive.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a positive float; got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite; got {value!r}")
    return float(value)


def count(value: object, name: str, *, minimum: int = 1) -> int:
    """``value`` as an int, if it is an integer >= ``minimum``: a Python or numpy integer, or a
    0-d integer tensor (bools excluded).

    Raises:
        TypeError: ``value`` is not an integer.
        ValueError: ``value`` is below ``minimum``.
    """
    if isinstance(value, Tensor) and value.dim() == 0 and not value.is_floating_point():
        value = value.item() if value.dtype != torch.bool else value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}; got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value}")
    return value


def n_data(value: object, name: str = "n_data") -> float:
    """The training-set size N as a float: a Python, numpy or 0-d tensor number >= 1.

    Raises:
        TypeError: ``value`` is a bool, a string, or a tensor/array with more than one element.
        ValueError: ``value`` is not finite or below 1.
    """
    if isinstance(value, Tensor | np.ndarray | np.generic) and not isinstance(value, np.bool_):
        if value.ndim != 0:
            raise TypeError(f"{name} must be a number >= 1; got an array of shape {value.shape}")
        if isinstance(value, Tensor) and (value.dtype == torch.bool or value.is_complex()):
            raise TypeError(f"{name} must be a number >= 1; got a {value.dtype} tensor")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number >= 1; got {type(value).__name__}")
    value = float(value)
    if not (math.isfinite(value) and value >= 1):
        raise ValueError(f"{name} must be a finite number >= 1 (a count of examples); got {value}")
    return value


def tensor(value: object, name: str) -> Tensor:
    """``value``, if it is a torch.Tensor.

    Raises:
        TypeError: it is not.
    """
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}")
    return value


def nonempty(value: Tensor, name: str, shape: str = "(N, ...)") -> Tensor:
    """``value``, if it has at least one row.

    Raises:
        ValueError: an empty tensor (N = 0) or a 0-d tensor.
    """
    if value.dim() == 0 or value.shape[0] == 0:
        raise ValueError(f"{name} must have shape {shape} with N >= 1; got {tuple(value.shape)}")
    return value


def same_float_dtype(value: Tensor, name: str, dtype: torch.dtype, of: str) -> Tensor:
    """``value``, if it is not floating point or has ``dtype`` (no silent float32/64 mixes).

    Raises:
        TypeError: a floating-point ``value`` of another dtype, naming both.
    """
    if value.is_floating_point() and value.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {value.dtype} but {of} has {dtype}; convert one of them "
            f"(e.g. {name}.to({dtype}))"
        )
    return value


def scalar_targets(y: Tensor, name: str, n: int) -> Tensor:
    """Targets with one number per example, (N,) or (N, 1), as shape (N,).

    The one convention of blrlib (see the Conventions page): an observation that is a single
    number is passed as (N,), and (N, 1) is read as (N,), never broadcast.

    Raises:
        ValueError: any other shape, naming ``name`` and N.
    """
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) or ({n}, 1); got {tuple(y.shape)}")
    return y


def class_labels(y: Tensor, name: str, n_classes: int) -> Tensor:
    """``y`` as int64 class indices, if every entry is an integer in [0, n_classes).

    Raises:
        ValueError: a label that is not an integer in 0..n_classes-1.
    """
    if y.is_floating_point() and not bool(torch.isfinite(y).all()):
        raise ValueError(f"{name} must hold class indices 0..{n_classes - 1}; got NaN or inf")
    labels = y.long()
    if bool((labels != y).any()) or bool(((labels < 0) | (labels >= n_classes)).any()):
        bad = y[(labels != y) | (labels < 0) | (labels >= n_classes)][:3].tolist()
        raise ValueError(f"{name} must hold class indices 0..{n_classes - 1}; got e.g. {bad}")
    return labels
