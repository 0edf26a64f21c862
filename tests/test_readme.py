"""The README's example runs and does what it says."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "blr.step" in b)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)  # the fixture restores the dtype
    m, cov = namespace["m"], namespace["cov"]
    # the variational mean is near the MAP: the gradient of the loss there is small relative
    # to its size at the origin (500 examples, so the posterior is narrow)
    grad = torch.func.grad(namespace["loss"])
    assert grad(m).norm() < 0.05 * grad(torch.zeros_like(m)).norm()
    assert torch.linalg.eigvalsh(cov).min() > 0
