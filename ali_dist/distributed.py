"""Process-group helpers. The only torch.distributed calls in the package live here; every
function is a no-op without an initialised process group (one process, tests, the API)."""
from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> tuple[int, int]:
    """(rank, world size)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_mean_(tensors: list[torch.Tensor]) -> None:
    """Average tensors across ranks in place, with one collective on a flat buffer.

    Data parallelism as DDP does it, minus the reducer: ALI's simultaneous update takes two
    gradients (D's and E/G's) from one graph, which DDP's one-backward-per-forward hooks cannot
    express, so the step all-reduces its gradients itself (as stylegan2-ada's loop does).
    """
    if not is_distributed() or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


def agree(flag: bool, device=None) -> bool:
    """True on every rank if it is true on any: ranks must stop in the same step."""
    if not is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sync_grads_(params) -> None:
    all_reduce_mean_([p.grad for p in params if p.grad is not None])


def sync_buffers_(module: torch.nn.Module) -> None:
    """Average batch-norm running statistics so every rank evaluates and saves the same model."""
    all_reduce_mean_([b for b in module.buffers() if b.is_floating_point()])


def broadcast_module_(module: torch.nn.Module, src: int = 0) -> None:
    """Start every rank from rank `src`'s parameters and buffers."""
    if not is_distributed():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src)


def all_gather_object(obj):
    if not is_distributed():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
