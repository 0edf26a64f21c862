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


def _explicit_group(rank: int) -> list[Tensor]:
    """OGN given ``process_group=`` (a group of its own) on different data per rank."""
    torch.manual_seed(0)
    net = nn.Linear(4, 3, dtype=torch.float64)
    opt = optim.OGN(net.parameters(), n_data=64, model=net, loss_fn=ddp_train.per_example_ce,
                    lr=0.1, process_group=dist.new_group([0, 1]))  # fmt: skip
    x, y = ddp_train.data(dtype=torch.float64)
    for _ in range(3):
        ddp_train.train_step(opt, net, x[rank::WORLD], y[rank::WORLD])
    return [p.detach() for p in net.parameters()]


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
    results["explicit_group"] = _explicit_group(rank)
    torch.save(results, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(out: Path) -> list[dict]:
    """Run :func:`_worker` on the 2 ranks; their saved results (a hang fails, not blocks)."""
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


def _ranks_equal(ranks: list[dict], name: str) -> None:
    a, b = (_tensors(r[name]) for r in ranks)
    assert len(a) == len(b) > len(ranks[0][name]["params"])  # some state besides the weights
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert ranks[0][name]["state"]["param_groups"] == ranks[1][name]["state"]["param_groups"]


def _equals_one_process(ranks: list[dict], name: str) -> None:
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


def test_every_optimizer_under_ddp(tmp_path):
    """One spawn for every check (a spawn costs seconds; one test, so that pytest-xdist
    cannot split the file over workers and spawn twice)."""
    ranks = _spawn(tmp_path)
    failures = []
    for name in ddp_train.OPTIMIZERS:
        for check in (_ranks_equal, _equals_one_process):
            try:
                check(ranks, name)
            except AssertionError as e:
                failures.append(f"{name}, {check.__name__}: {e}")
    assert not failures, "\n".join(failures)

    # VON's h against the exact diagonal mean_i x_ij^2, averaged over the 500 parameters.
    # h is an exponential average (rate beta) of (theta - m) s g, an unbiased estimate of
    # H_jj with relative variance about 2 + d / n = 3 (off-diagonal terms included); over 500
    # parameters and a window of about 2 / beta steps the relative sd of the average is
    # sqrt(3 beta / (2 d)) = 0.5%. VON's correction that keeps s > 0 adds about beta / 2
    # times that variance, 1.5%, upwards: 4% is that bias and 4 sd. Independent draws on the
    # ranks would give about 0.5 (the module docstring of blrlib.optim).
    h, exact = ranks[0]["von_quadratic"]
    ratio = float((h / exact).mean())
    print(f"VON precision / exact Hessian under DDP: {ratio:.4f}")
    assert abs(ratio - 1) < 0.04, ratio
    assert torch.equal(h, ranks[1]["von_quadratic"][0])

    for p, q in zip(*(r["explicit_group"] for r in ranks), strict=True):
        assert torch.equal(p, q)  # process_group= given: the curvature averaged over it
    for r in ranks:  # per-rank noise is refused, a rank drawing alone is caught
        assert "different states" in r["refusals"]["per_rank_seed"]
        assert "diverged" in r["refusals"]["drew_alone"]
