"""Train a small classifier with any blrlib optimizer on several processes (DDP).

    torchrun --standalone --nproc-per-node 2 examples/ddp_train.py --optimizer VON --steps 20

Each step draws one global batch (the same on every rank) and gives each rank its slice; the
model is wrapped in ``DistributedDataParallel``, which averages the gradients. The
optimizer's generator is seeded identically on every rank, so every rank draws the same
weights, and ``opt.backward`` (OGN, VOGN, Newton) averages its curvature over the ranks.
Every rank then holds the same weights and state, and those of one process trained on the
global batches: ``tests/optim/test_distributed.py`` runs this file's :func:`train` on 2 gloo
processes and checks both. Runs on CPU (gloo) or one GPU per rank (nccl).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from blrlib import optim

OPTIMIZERS = ("AdamLike", "VON", "VON-dropout", "VOGN", "OGN", "Newton", "BayesBiNN", "STE")
"""The names :func:`make_optimizer` knows: every optimizer of ``blrlib.optim``."""


def per_example_ce(f: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy per example (the loss_fn that OGN, VOGN and Newton differentiate)."""
    return F.cross_entropy(f, y, reduction="none")


def data(n: int = 64, *, seed: int = 0, dtype: torch.dtype = torch.float32):
    """A 3-class problem in 4 dimensions, the same on every rank: (x, y)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=dtype)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    return x, y


def make_optimizer(
    name: str, model: nn.Module, *, n_data: int, generator: torch.Generator
) -> optim.BLROptimizer:
    """The optimizer ``name`` (one of :data:`OPTIMIZERS`) over the parameters of ``model``."""
    params, kw = model.parameters(), {"n_data": n_data}
    curvature = {"model": model, "loss_fn": per_example_ce, **kw}
    if name == "AdamLike":
        return optim.AdamLike(params, lr=1e-2, generator=generator, **kw)
    if name == "VON":
        return optim.VON(params, lr=0.05, beta=0.01, generator=generator, **kw)
    if name == "VON-dropout":
        return optim.VON(params, lr=0.05, beta=0.01, generator=generator, dropout=0.9, **kw)
    if name in ("VOGN", "OGN"):
        cls = optim.VOGN if name == "VOGN" else optim.OGN
        return cls(params, lr=0.05, beta=0.05, hess_init=1.0, generator=generator, **curvature)
    if name == "Newton":
        return optim.Newton(params, lr=0.05, absolute=True, generator=generator, **curvature)
    if name == "BayesBiNN":
        return optim.BayesBiNN(params, lr=0.05, tau=1.0, generator=generator, **kw)
    if name == "STE":  # no draws: no generator
        return optim.STE(params, lr=0.05)
    raise ValueError(f"name must be one of {OPTIMIZERS}; got {name!r}")


def train_step(
    opt: optim.BLROptimizer,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
) -> Tensor:
    """One step on this rank's slice (x, y); returns the loss (of this slice, or averaged
    over the ranks for ``opt.backward``)."""
    opt.zero_grad()
    with opt.sampled_params(train=True):  # the same draw on every rank
        if opt.model is not None:  # OGN, VOGN, Newton: torch.func, averaged by backward
            loss = opt.backward(x, y)
        else:  # DDP averages the gradient during backward()
            loss = loss_fn(model(x), y)
            loss.backward()
    opt.step()
    return loss.detach()


def train(
    name: str,
    *,
    rank: int = 0,
    world_size: int = 1,
    steps: int = 20,
    batch: int = 16,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, optim.BLROptimizer, list[float]]:
    """Train optimizer ``name`` for ``steps`` steps of global batches of size ``batch``.

    With ``world_size`` > 1 (a process group initialised), this rank trains on its slice of
    each batch, the model wrapped in DDP; with 1 process, on the whole batch.

    Returns:
        (the network, the optimizer, the losses).
    """
    x, y = data(seed=seed, dtype=dtype)
    x, y = x.to(device), y.to(device)
    torch.manual_seed(seed)  # the same initial weights everywhere (DDP broadcasts rank 0's)
    layers = [nn.Linear(4, 8, dtype=dtype), nn.Tanh(), nn.Linear(8, 3, dtype=dtype)]
    net = nn.Sequential(*layers).to(device)
    model = DistributedDataParallel(net) if world_size > 1 else net
    generator = torch.Generator(device).manual_seed(seed + 1)  # the same seed on every rank
    opt = make_optimizer(name, model, n_data=len(x), generator=generator)
    order = torch.Generator().manual_seed(seed + 2)  # the batches, the same on every rank
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(x), (batch,), generator=order).to(device)
        mine = idx.chunk(world_size)[rank]  # batch / world_size examples per rank
        losses.append(float(train_step(opt, model, x[mine], y[mine])))
    return net, opt, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", default="VON", choices=OPTIMIZERS)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    net, _, losses = train(args.optimizer, rank=rank, world_size=world, steps=args.steps,
                           device=device)  # fmt: skip
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    every = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(every, flat)
    if rank == 0:
        same = all(torch.equal(every[0], other) for other in every)
        print(f"{args.optimizer}: {world} ranks, loss {losses[0]:.4f} -> {losses[-1]:.4f}, "
              f"weights identical on every rank: {same}")  # fmt: skip
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
