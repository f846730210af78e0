"""Distributed data parallel set-up for ``torchrun --nproc_per_node=N``.

``torchrun`` starts ``N`` copies of the training script and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each one's environment. Each copy joins one
process group (gloo on CPU, nccl on CUDA), wraps the model in
:class:`torch.nn.parallel.DistributedDataParallel`, reads its own slice of every global batch
(:class:`~maha.training.data.ShardedBatchSampler`), and lets DDP average the gradients, so with
equal local batches the update equals that of one process on the combined batch:

    ∇ (1/B) Σ_{b<B} ℓ_b = (1/W) Σ_{r<W} ∇ (W/B) Σ_{b ∈ shard r} ℓ_b .

Without those variables the helpers here describe a single process and do nothing.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "DistributedContext",
    "all_reduce_sum",
    "cleanup_distributed",
    "init_distributed",
    "resolve_device",
    "wrap_model",
]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its rank, the world size and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_distributed(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that prints, evaluates to the log and checkpoints."""
        return self.rank == 0


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:K"`` into a device.

    ``"auto"`` picks CUDA when available. Under ``torchrun`` a bare ``"cuda"`` becomes
    ``cuda:LOCAL_RANK`` so that each process drives its own GPU.

    Raises:
        ValueError: an unknown device string, or CUDA asked for but not available.
    """
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda'; received {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device {device!r} is not a valid torch device: {err}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was requested but CUDA is not available")
        if resolved.index is None:
            resolved = torch.device("cuda", local_rank)
    elif resolved.type != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:K]'; received {device!r}")
    return resolved


def init_distributed(device: str = "auto") -> DistributedContext:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    The backend is nccl for CUDA devices and gloo for CPU. Without ``WORLD_SIZE`` (or with
    ``WORLD_SIZE=1``) no process group is created; a group this process already joined is
    reused (joining once per process avoids re-initialising on the same rendezvous store).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    resolved = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank, world_size, local_rank, resolved)


def wrap_model(
    model: nn.Module, context: DistributedContext, *, find_unused_parameters: bool = False
) -> nn.Module:
    """``model`` wrapped in DDP when several processes train, else ``model`` itself.

    DDP broadcasts rank 0's parameters and buffers at construction, so all ranks start equal.
    Set ``find_unused_parameters`` when some parameters take no part in the loss.
    """
    if not context.is_distributed:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def all_reduce_sum(tensor: Tensor, context: DistributedContext) -> Tensor:
    """The sum of ``tensor`` over all ranks (a new tensor; the input is left unchanged)."""
    out = tensor.clone()
    if context.is_distributed:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def cleanup_distributed() -> None:
    """Leave the process group, if this process joined one.

    A garbage collection runs first. DDP's autograd hooks leave reference cycles that still hold
    gloo work objects after the wrapper is gone; freed only at interpreter exit, after the group
    was destroyed, they abort the process ("terminate called without an active exception") in
    about one launch in five with torch 2.13 on CPU (``python benchmarks/ddp_teardown.py``: 6 of
    30 two-rank launches of a bare DDP + gloo script; with the collection, none of 30). No
    barrier: a rank that failed must still be able to leave.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
