"""torch.distributed in the BLR optimizers: one draw for every rank, averaged curvature.

    dist.init_process_group("nccl")                        # or torchrun's environment
    ddp = DistributedDataParallel(model)
    opt = blrlib.optim.VON(ddp.parameters(), n_data=N,
                           generator=torch.Generator(device).manual_seed(0))  # same seed

Under ``DistributedDataParallel`` every rank holds the same q and computes the gradient of its
own shard; DDP averages the gradients (the batch-mean convention of ``n_data``). What the
optimizer owns is kept identical on every rank here: the draw theta ~ q (and the dropout
masks) come from a generator in the same state on every rank, so the averaged gradient is the
gradient of one draw; the curvature that :meth:`BLROptimizer.backward` computes by
``torch.func`` (outside DDP's hooks) is averaged by :func:`mean_`.
"""

from __future__ import annotations

import functools
import hashlib

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["active", "check_generator", "mean_", "shared_generator"]

DIFFERENT = (
    "generator: the ranks' generators are in different states, so each rank would draw its own "
    "weights; DDP would then average gradients of different draws, and VON's precision "
    "estimate (theta - m) s g would be about 1/world_size of the truth. blrlib refuses "
    "per-rank noise: seed the generator identically on every rank "
    "(torch.Generator(device).manual_seed(seed), the same seed), or pass generator=None "
    "and the optimizer shares rank 0's"
)
DIVERGED = (
    "generator: the ranks' generators diverged since the last training draw: one rank drew "
    "from the optimizer's generator alone (e.g. predict() or sampled_params(train=False) on "
    "one rank), and the ranks would now train on different draws. Make the same draws on "
    "every rank (predict() on every rank), or predict with a copy of both: "
    "model2, opt2 = copy.deepcopy((model, opt))"
)


def active(group: dist.ProcessGroup | None) -> dist.ProcessGroup | None:
    """The process group to synchronise over: ``group`` if given, else the default group when
    one is initialised with more than one rank, else None (a single process)."""
    if group is not None:
        return group
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.group.WORLD
    return None


def mean_(tensors: list[Tensor], group: dist.ProcessGroup) -> None:
    """Replace each tensor by its mean over the ranks of ``group``, in place (one all-reduce).

    The mean, not the sum, as DDP averages gradients: with equal shards the mean over ranks
    of a batch mean is the mean over the concatenated batch.
    """
    if not tensors:
        return
    dtype = functools.reduce(torch.promote_types, [t.dtype for t in tensors])
    flat = torch.cat([t.detach().reshape(-1).to(dtype) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    flat.div_(dist.get_world_size(group))
    for t, part in zip(tensors, flat.split([t.numel() for t in tensors]), strict=True):
        t.copy_(part.view_as(t))


def _fingerprint(generator: torch.Generator) -> int:
    digest = hashlib.blake2b(generator.get_state().numpy().tobytes(), digest_size=7).digest()
    return int.from_bytes(digest, "little")  # < 2^56: exact in int64


def check_generator(
    generator: torch.Generator, group: dist.ProcessGroup, device: torch.device, *, first: bool
) -> None:
    """Raise unless ``generator`` is in the same state on every rank (a 2-number all-reduce).

    Raises:
        ValueError: at the first draw (``first``): the generators were seeded differently.
        RuntimeError: later: they diverged, one rank having drawn alone.
    """
    f = _fingerprint(generator)
    t = torch.tensor([f, -f], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    high, low = t.tolist()  # max f and -(min f): equal on every rank iff all f are equal
    if high != -low:
        if first:
            raise ValueError(DIFFERENT)
        raise RuntimeError(DIVERGED)


def shared_generator(device: torch.device, group: dist.ProcessGroup) -> torch.Generator:
    """A generator on ``device`` seeded with rank 0's draw from torch's global generator.

    Every rank draws a seed (so that every rank's global generator advances alike) and takes
    rank 0's, broadcast.
    """
    seed = torch.randint(0, 2**62, (1,), dtype=torch.int64).to(device)
    dist.broadcast(seed, src=dist.get_global_rank(group, 0), group=group)
    return torch.Generator(device=device).manual_seed(int(seed.item()))
