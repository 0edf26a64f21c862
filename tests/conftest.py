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
