"""A small network and its loss both as an nn.Module and as a function of one flat vector."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

from blrlib.estimators import SumLoss


def per_example_ce(f: Tensor, y: Tensor) -> Tensor:
    return nn.functional.cross_entropy(f, y, reduction="none")


def problem(n: int = 24, seed: int = 0, dtype: torch.dtype = torch.float64):
    """(model, x, y, flat_loss): an MLP 3-5-3 on random data; flat_loss is a SumLoss of theta.

    flat_loss(theta) = sum_i ell_i(theta) = N * (batch-mean loss) on the full batch, the data
    term of bar-ell; the prior enters ``blr.step`` as the conjugate prior lam_0 = (0, -delta/2).
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=dtype)
    y = torch.randint(0, 3, (n,), generator=g)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3)).to(dtype)
    names = [k for k, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]

    def per_example(theta: Tensor) -> Tensor:
        parts = [t.view(s) for t, s in zip(theta.split(sizes), shapes, strict=True)]
        f = functional_call(model, dict(zip(names, parts, strict=True)), (x,))
        return per_example_ce(f, y)

    return model, x, y, SumLoss(per_example)


def flat(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])
