"""Argument checks shared by blrlib's public functions: each error names the argument."""

from __future__ import annotations

import math


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
    """``value``, if it is an int >= ``minimum`` (bools excluded).

    Raises:
        TypeError: ``value`` is not an int.
        ValueError: ``value`` is below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}; got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value}")
    return value
