"""Shared pytest configuration: every test runs in float64 from the same random seed."""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_float64() -> Iterator[None]:
    """Seed torch and make float64 the default dtype for the test, then restore the default."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(default)


@pytest.fixture(params=[torch.float64, torch.float32], ids=["float64", "float32"])
def float_dtype(request: pytest.FixtureRequest, _seed_and_float64: None) -> torch.dtype:
    """Run the test twice, with torch's default dtype float64 and float32 (users' default).

    It depends on the autouse fixture, so it runs after it and overrides its float64; the
    autouse fixture restores the original default afterwards.
    """
    torch.set_default_dtype(request.param)
    return request.param


def rounding(dtype: torch.dtype, float64: float = 1e-10, float32: float = 1e-4) -> float:
    """A tolerance for two computations that agree up to rounding, by dtype.

    float64 (eps 2.2e-16) keeps 1e-10 with room for ~1e5 accumulated roundings; float32
    (eps 1.2e-7) reaches about 1e-5 relative after a few steps on sums of N = 24 terms, so
    1e-4 leaves a factor of 10 and still catches a wrong formula (errors of order 1e-2).
    """
    return float64 if dtype == torch.float64 else float32
