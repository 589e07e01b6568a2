"""torchrun support: one process per device, DistributedDataParallel, rank 0 writes.

Under `torchrun` (WORLD_SIZE > 1 in the environment) the process group starts with
`gloo` on CPU and `nccl` on CUDA; otherwise every method here is a cheap no-op, so the
trainer calls them unconditionally and single-process runs are unchanged.

Ranks must agree on when to stop (Ctrl-C, NaN, a failed checkpoint write): a rank that
leaves alone would leave the others waiting in the next all-reduce. The trainer therefore
decides every such question from values all-reduced here, never from local ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from lvae.config import ConfigError


@dataclass
class DistContext:
    enabled: bool
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP around `model`; on CUDA, batch norm statistics are synchronised across ranks.

        SyncBatchNorm needs CUDA, so on CPU each rank normalises over its own local batch.
        `model` keeps its parameters and state_dict keys, so checkpoints do not change.
        """
        if not self.enabled:
            return model
        if self.device.type == "cuda":
            nn.SyncBatchNorm.convert_sync_batchnorm(model)
            return nn.parallel.DistributedDataParallel(model, device_ids=[self.device.index])
        return nn.parallel.DistributedDataParallel(model)

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum `t` over ranks in place (gloo has no AVG); returns it."""
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def any(self, flag: bool) -> bool:
        """True on every rank if `flag` is true on any rank."""
        if not self.enabled:
            return flag
        return bool(self.sum_(torch.tensor([float(flag)], device=self.device)).item() > 0)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank (picklable objects, tensors on CPU)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


def context(device_name: str) -> DistContext:
    """Join the process group if launched by torchrun, else a single-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(False, 0, 1, torch.device(device_name))
    if device_name.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ConfigError(f"process {local} on this machine has no GPU of its own ({torch.cuda.device_count()} found); "
                              f"use --nproc_per_node {torch.cuda.device_count()} or fewer")
        torch.cuda.set_device(local)
        device, backend = torch.device("cuda", local), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, device_id=device if backend == "nccl" else None)
    return DistContext(True, dist.get_rank(), dist.get_world_size(), device)


def launch_rank() -> int:
    """This process's rank as torchrun set it (0 outside torchrun), readable before any group exists."""
    return int(os.environ.get("RANK", "0"))


def launch_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def shutdown(finished: bool = False) -> None:
    """Leave the process group. After a run that `finished` on every rank, wait for the others first:
    a rank that tears its connections down while rank 0 is still writing its last files can abort
    rank 0's gloo threads (seen once in CI as "terminate called without an active exception").
    After an error the other ranks may be gone, so no one is waited for."""
    if dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()
