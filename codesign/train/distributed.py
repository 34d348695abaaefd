"""Process-group plumbing for `torchrun`: one process per device, gloo on CPU, NCCL on GPUs.

A plain `codesign train` run is world size 1 and touches none of this. Under `torchrun` the environment
variables it sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) select the distributed path; the
training code is the same, with DDP averaging gradients and each rank reading its own slice of every batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env() -> DistInfo:
    """Join the process group torchrun describes (if any); idempotent."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    device = f"cuda:{local}" if use_cuda else "cpu"
    if use_cuda:
        torch.cuda.set_device(local)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=device)


def wrap(model: nn.Module, info: DistInfo) -> nn.Module:
    """DDP over the trainable parameters when world size > 1; the model itself otherwise."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    # Broadcast from rank 0 happens at construction; frozen parameters are ignored by DDP.
    return DistributedDataParallel(model, device_ids=None if info.device == "cpu" else [info.local_rank])


def mean_across(values: list[float], info: DistInfo) -> list[float]:
    """Average scalars over ranks (for logging: every rank then reports the same numbers)."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return (t / info.world_size).tolist()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
