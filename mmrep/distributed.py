"""Data-parallel training with ``torch.distributed``: the process group, the batch split, rank-0 duties.

``torchrun --nproc_per_node N -m mmrep.train <overrides>`` (or ``mmrep train`` under any launcher that
sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``) starts N copies of
the training; ``DistContext.from_env`` joins them in one process group: ``nccl`` on GPUs (one per
process, ``cuda:LOCAL_RANK``), ``gloo`` on CPUs. Without those variables it is one process, as before.

The split (``rank_batches``): every rank computes the same global batch order (a function of seed
and epoch, ``mmrep.train.epoch_order``) and takes its contiguous share of each global batch, so the
N processes together see exactly the 1-process batches of ``batch_size`` samples (``batch_size`` is
the global batch). ``torch.utils.data.DistributedSampler`` would instead deal a permutation out
rank by rank, so the global batches would differ from the 1-process run's. The alignment negatives
stay a function of (seed, epoch, sample index), whichever rank draws the sample.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """This process's place in the group: ``rank`` of ``world`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this context initialised the process group (and destroys it)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, validates and writes checkpoints."""
        return self.rank == 0

    @classmethod
    def from_env(cls, device_type: str) -> DistContext:
        """Join the process group that ``torchrun`` describes in the environment; one process otherwise.

        ``device_type``: ``cuda`` (backend ``nccl``) or ``cpu`` (``gloo``)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing and not dist.is_initialized():
            raise ValueError(f"WORLD_SIZE={world} but {', '.join(missing)} not set: start the processes with torchrun "
                             f"(torchrun --standalone --nproc_per_node {world} -m mmrep.train ...)")
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        return cls(rank=int(os.environ["RANK"]), world=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                   owns_group=owns)

    def device(self, device: torch.device) -> torch.device:
        """This rank's device: ``cuda:LOCAL_RANK`` under DDP on GPUs, ``device`` otherwise."""
        if self.enabled and device.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank (one small all-reduce)."""
        if not self.enabled:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def rank_batches(order: list[int], batch_size: int, first: int, last: int, rank: int = 0,
                 world: int = 1) -> list[list[int]]:
    """This rank's sample indices for global batches ``first`` .. ``last - 1`` of ``order``.

    Global batch ``b`` is ``order[b * batch_size : (b + 1) * batch_size]``; the rank takes its
    contiguous share (``np.array_split``: sizes differ by at most one). A short last batch with fewer
    samples than ranks is dropped under DDP, where every rank must take part in every step.
    """
    batches = []
    for b in range(first, last):
        chunk = order[b * batch_size:(b + 1) * batch_size]
        if not chunk:
            break
        if world > 1:
            if len(chunk) < world:
                break
            chunk = [int(i) for i in np.array_split(np.asarray(chunk), world)[rank]]
        batches.append(chunk)
    return batches
