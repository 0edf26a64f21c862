"""Every blrlib optimizer under torch.distributed: 2 gloo processes on CPU, the model in DDP.

One spawn of 2 processes runs ``examples/ddp_train.py``'s :func:`train` for every optimizer
(and the checks below) and saves what each rank ends with; the test then compares the ranks
with each other (bitwise) and with one process trained on the same global batches.
"""

from __future__ import annotations

import datetime
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.testing import assert_close

from blrlib import optim
from examples import ddp_train

WORLD = 2
TIMEOUT_S = 120  # a hang (a rank waiting on a collective forever) fails the test instead
QUAD_D, QUAD_N, QUAD_STEPS, QUAD_BETA = 500, 512, 400, 0.01


def _quadratic(dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Least squares with independent features of scales 0.5 to 2 and targets 0: the loss
    (1/2n) sum_i (x_i^T theta)^2 is quadratic, its minimum is at 0, where the weights start,
    and its Hessian X^T X / n is constant, with diagonal mean_i x_ij^2."""
    g = torch.Generator().manual_seed(5)
    scales = torch.linspace(0.5, 2.0, QUAD_D, dtype=dtype)
    x = torch.randn(QUAD_N, QUAD_D, generator=g, dtype=dtype) * scales
    return x, torch.zeros(QUAD_N, dtype=dtype)


def _half_mse(f: Tensor, y: Tensor) -> Tensor:
    return 0.5 * ((f.squeeze(-1) - y) ** 2).mean()


def von_quadratic(rank: int = 0, world_size: int = 1) -> tuple[Tensor, Tensor]:
    """VON on the quadratic, every rank on its half of the data at each step (DDP).

    Returns:
        (h, the exact Hessian diagonal): h is VON's estimate, (s - delta) / N.
    """
    x, y = _quadratic()
    net = nn.Linear(QUAD_D, 1, bias=False).double()
    nn.init.zeros_(net.weight)
    model = DistributedDataParallel(net) if world_size > 1 else net
    opt = optim.VON(model.parameters(), n_data=QUAD_N, lr=0.01, beta=QUAD_BETA, gamma=0.0,
                    generator=torch.Generator().manual_seed(3))  # fmt: skip
    mine = torch.arange(QUAD_N).chunk(world_size)[rank]
    for _ in range(QUAD_STEPS):
        ddp_train.train_step(opt, model, x[mine], y[mine], loss_fn=_half_mse)
    h = (opt.precision(net.weight) - 1.0) / QUAD_N
    return h.reshape(-1), (x * x).mean(0)


def _refusals(rank: int) -> dict[str, str]:
    """The errors of per-rank noise: differently seeded generators, and a rank drawing alone."""
    out = {}
    net = nn.Linear(3, 2).double()
    seeded = optim.VON(net.parameters(), n_data=10,
                       generator=torch.Generator().manual_seed(rank))  # fmt: skip
    try:
        with seeded.sampled_params(train=True):
            pass
    except ValueError as e:
        out["per_rank_seed"] = str(e)
    shared = optim.VON(net.parameters(), n_data=10)  # generator=None: rank 0's, shared
    with shared.sampled_params(train=True):
        pass
    if rank == 0:
        optim.predict(net, shared, torch.zeros(1, 3, dtype=torch.float64), n_samples=1)
    try:
        with shared.sampled_params(train=True):
            pass
    except RuntimeError as e:
        out["drew_alone"] = str(e)
    return out


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=TIMEOUT_S))  # fmt: skip
    results: dict[str, object] = {}
    for name in ddp_train.OPTIMIZERS:
        net, opt, _ = ddp_train.train(name, rank=rank, world_size=WORLD, dtype=torch.float64)
        results[name] = {"params": [p.detach() for p in net.parameters()],
                         "state": opt.state_dict()}  # fmt: skip
    results["von_quadratic"] = von_quadratic(rank, WORLD)
    results["refusals"] = _refusals(rank)
    torch.save(results, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """Spawn the 2 ranks once for the whole file; their saved results."""
    out = tmp_path_factory.mktemp("ddp")
    ctx = mp.start_processes(_worker, args=(_free_port(), str(out)), nprocs=WORLD,
                             join=False, start_method="spawn")  # fmt: skip
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not ctx.join(timeout=max(deadline - time.monotonic(), 0.1)):
            if time.monotonic() > deadline:
                pytest.fail(f"the {WORLD} gloo processes did not finish in {TIMEOUT_S} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def _tensors(result: dict) -> list[Tensor]:
    """Parameters, then every tensor of the optimizer state, the generator's included."""
    state = result["state"]
    out = list(result["params"])
    for i in sorted(state["state"]):
        out += [v for _, v in sorted(state["state"][i].items()) if torch.is_tensor(v)]
    if "generator" in state:
        out.append(state["generator"])
    return out


@pytest.mark.parametrize("name", ddp_train.OPTIMIZERS)
def test_ranks_end_bitwise_equal(ranks, name):
    a, b = (_tensors(r[name]) for r in ranks)
    assert len(a) == len(b) > len(ranks[0][name]["params"])  # some state besides the weights
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert ranks[0][name]["state"]["param_groups"] == ranks[1][name]["state"]["param_groups"]


@pytest.mark.parametrize("name", ddp_train.OPTIMIZERS)
def test_ranks_equal_one_process_on_the_global_batches(ranks, name):
    """Tolerance: in float64 the two runs differ only in summation order (a mean of two
    half-batch means against one mean), rounding of order 1e-16 per step; 1e-10 leaves room
    for 20 steps of growth, and a wrong all-reduce (one shard, or a sum) differs at 1e-2."""
    net, opt, _ = ddp_train.train(name, dtype=torch.float64)
    one = _tensors({"params": [p.detach() for p in net.parameters()], "state": opt.state_dict()})
    for x, y in zip(_tensors(ranks[0][name]), one, strict=True):
        if x.dtype == torch.uint8:  # the generator: the same number of draws
            assert torch.equal(x, y)
        else:
            assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_von_precision_under_ddp_is_the_exact_hessian(ranks):
    """VON's h against the exact diagonal mean_i x_ij^2, averaged over the 200 parameters.

    h is an exponential average (rate beta) of (theta - m) s g, an unbiased estimate of H_jj
    with relative sd about sqrt(2) here (independent features, the full batch over the two
    ranks); the average over 200 parameters and a window of about 2 / beta steps has a
    relative sd near sqrt(2) * sqrt(beta / 2) / sqrt(200) = 0.7%: 3% is four of them. Ranks
    that drew independent noise give about 0.5 (the ratio before ranks shared the draw).
    """
    h, exact = ranks[0]["von_quadratic"]
    ratio = float((h / exact).mean())
    print(f"VON precision / exact Hessian under DDP: {ratio:.4f}")
    assert abs(ratio - 1) < 0.03, ratio
    assert torch.equal(h, ranks[1]["von_quadratic"][0])


def test_per_rank_noise_is_refused(ranks):
    for r in ranks:
        assert "different states" in r["refusals"]["per_rank_seed"]
        assert "diverged" in r["refusals"]["drew_alone"]
