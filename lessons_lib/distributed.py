"""Data-parallel training across processes with ``torchrun`` (lesson 10).

``torchrun --nproc_per_node=N -m lessons_lib.train ...`` starts N copies of the training script
and gives each the environment variables RANK, LOCAL_RANK and WORLD_SIZE. Each process holds a full
model, reads its own slice of every batch, and DDP averages the gradients across processes in
``backward``. NCCL carries them between GPUs; gloo between CPU processes.

Several machines: run the same torchrun command on each with ``--nnodes=M --node_rank=i
--rdzv_backend=c10d --rdzv_endpoint=HOST:PORT`` (HOST is one of the machines).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


def torchrun_unavailable(platform: str = sys.platform) -> str | None:
    """Why ``torchrun`` cannot start its processes on ``platform``, or None where it can.

    torchrun's rendezvous uses libuv, which PyTorch's Windows wheels are built without (pytorch issue
    139990): on Windows it fails before any process starts. Use WSL there, or one process with
    gradient accumulation (the same gradients, lesson 10)."""
    if platform == "win32":
        return "torchrun's rendezvous needs libuv, which PyTorch's Windows wheels lack (pytorch issue 139990)"
    return None


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_master(self) -> bool:
        """Rank 0 alone logs, evaluates and writes checkpoints."""
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun set up (a no-op when not launched by torchrun)."""
    if "RANK" not in os.environ:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]))
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info


def device_for(info: DistInfo, device: torch.device) -> torch.device:
    """Each process on a multi-GPU machine drives the GPU of its local rank."""
    return torch.device("cuda", info.local_rank) if device.type == "cuda" and info.enabled else device


def mean_across_ranks(value: torch.Tensor) -> torch.Tensor:
    """Average a tensor over the processes of the process group (the loss each rank saw on its
    slice of the batch); a no-op without one. SUM then divide: gloo has no AVG."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= dist.get_world_size()
    return value


def barrier(info: DistInfo) -> None:
    """Wait until every process gets here (a no-op without a process group)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
