"""Shared pytest configuration: every test starts from the same random seed."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Seed torch before each test so that random draws are reproducible."""
    torch.manual_seed(0)
