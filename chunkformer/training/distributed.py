"""torchrun environment: process group set-up, rank helpers, reductions of statistics.

Single node: ``torchrun --nproc_per_node=N -m chunkformer.bin.train ...``. Multi-node: the
standard rendezvous flags, e.g. on every node ``torchrun --nnodes=2 --node_rank=<i>
--nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=<host0>:29500 -m chunkformer.bin.train``.
NCCL on GPUs, gloo on CPUs.
"""
import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistEnv:
    """Read torchrun's variables; start the process group when there is more than one rank."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank, local = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    dev = torch.device(f"cuda:{local}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistEnv(rank, world, local, dev)


def all_reduce_sum(values, env: DistEnv, op=None):
    """Sum (or ``op``: ``dist.ReduceOp.MAX`` …) a list of floats over ranks (identity on one
    rank)."""
    if not env.distributed:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64,
                     device=env.device if env.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t.tolist()


def check_in_sync(values, env: DistEnv, what: str):
    """Raise if ``values`` (floats) are not identical on every rank."""
    values = list(values)
    high = all_reduce_sum(values + [-v for v in values], env, op=dist.ReduceOp.MAX)
    n = len(values)
    if any(high[i] != -high[n + i] for i in range(n)):
        raise RuntimeError(f"rank {env.rank}: {what} differ between ranks "
                           f"(max {high[:n]}, min {[-v for v in high[n:]]})")


def gather_to_main(items: list, env: DistEnv) -> list:
    """Every rank's ``items`` (picklable), concatenated in rank order on rank 0; [] elsewhere."""
    if not env.distributed:
        return list(items)
    parts = [None] * env.world_size if env.is_main else None
    dist.gather_object(list(items), parts, dst=0)
    return [x for part in parts for x in part] if env.is_main else []


def barrier(env: DistEnv):
    if env.distributed:
        dist.barrier()


def shutdown(env: DistEnv):
    """Wait for every rank, then tear the process group down (a gloo group left alive at exit
    aborts the interpreter: "terminate called without an active exception"). Whatever still
    holds the group (a DDP reducer: drop the wrapper first) is collected before, so that the
    group really goes here and not in the interpreter's teardown."""
    if env.distributed and dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
