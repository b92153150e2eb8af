"""Process-group helpers. The only torch.distributed calls in the package live here; every
function is a no-op without an initialised process group (one process, tests, the API).

Gradients are averaged by torch DDP, one wrapper per optimiser group (`wrap_group`): ALI's
simultaneous update takes D's gradient from the D loss and E/G's from the generator loss, both
from one forward pass, which one DDP module (one backward per forward) cannot express; two
wrappers can, each expecting its own group's gradients from its own loss's backward pass."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> tuple[int, int]:
    """(rank, world size)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_mean_(tensors: list[torch.Tensor]) -> None:
    """Average tensors across ranks in place, with one collective on a flat buffer (batch-norm
    running statistics before evaluation and checkpoints; gradients go through DDP)."""
    if not is_distributed() or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


def agree(flags: list, device=None) -> list[bool]:
    """Each flag true on every rank if it is true on any (ranks must stop, roll back or end
    in the same step), in one collective. The caller's one host sync: call it where the loop
    may synchronise anyway (logging and checkpoint steps), never per step."""
    t = torch.stack([torch.as_tensor(f, device=device).reshape(()).to(torch.float32)
                     for f in flags])
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [v > 0 for v in t.tolist()]


# ---- data parallelism: torch DDP, one wrapper per optimiser group ----

GRAD_COMPRESSION = ("none", "bf16")


@dataclass(frozen=True)
class DDPOptions:
    """How gradients are averaged. Buckets of `bucket_mb` are all-reduced while the backward
    pass goes on (DDP's overlap); `grad_compression="bf16"` halves the bytes on the wire
    (casts each bucket to bf16 and back: for slow links between nodes)."""
    bucket_mb: float = 25.0
    grad_compression: str = "none"

    def __post_init__(self):
        if self.grad_compression not in GRAD_COMPRESSION:
            raise ValueError(f"unknown gradient compression {self.grad_compression!r}; "
                             f"choose one of {GRAD_COMPRESSION}")
        if self.bucket_mb <= 0:
            raise ValueError(f"the DDP bucket size must be positive, got {self.bucket_mb} MB")


class _Group(nn.Module):
    """One optimiser group's networks as one module for DDP. Its forward runs a closure: a
    method computes every group's loss in one pass of its own code (ALI's simultaneous
    update), so each group's wrapper sees that pass as its forward and its own group's loss
    as its output."""

    def __init__(self, modules: list[nn.Module]):
        super().__init__()
        self.nets = nn.ModuleList(modules)

    def forward(self, fn):
        return fn()


def _newer_ddp_options() -> dict:
    """Options that only recent torch releases take (the project pins torch 2.14; a GPU
    machine with an older torch still runs the step): the buffer-sync switch by its newer
    name, and batched gradient copies into the buckets."""
    import inspect
    accepted = inspect.signature(DDP.__init__).parameters
    out = {"forward_sync_buffers": False} if "forward_sync_buffers" in accepted else \
        {"broadcast_buffers": False}
    if "batched_grad_copy" in accepted:
        out["batched_grad_copy"] = True
    return out


_NEWER_DDP_OPTIONS = _newer_ddp_options()


def wrap_group(modules: list[nn.Module], options: DDPOptions) -> DDP:
    """A DDP wrapper over one group's networks, for the parameters that train now.

    static_graph: every step of a stage uses the same parameters, so DDP learns the unused
    ones (a frozen part, a branch a stage skips) in its first step instead of searching the
    graph every step. gradient_as_bucket_view + batched_grad_copy: gradients are copied into
    the buckets with one kernel per bucket and left there (no copy back, no second buffer).
    No buffer broadcasts: ranks keep their own batch-norm statistics, averaged before each
    evaluation and checkpoint (`sync_buffers_`). No sync at construction: the loop starts
    every rank from rank 0's weights (`broadcast_module_`) before the first step, and a
    wrapper made when a later stage begins must not overwrite the ranks' statistics."""
    ddp = DDP(_Group(modules), init_sync=False, static_graph=True, gradient_as_bucket_view=True,
              bucket_cap_mb=options.bucket_mb, **_NEWER_DDP_OPTIONS)
    # DDP's own timing statistics wait for CUDA events (a host sync) in its first 10
    # iterations and every 100th after: keep it to the first 10, warm-up anyway.
    ddp._set_ddp_runtime_logging_sample_rate(2**31 - 1)
    if options.grad_compression == "bf16":
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
        ddp.register_comm_hook(None, default_hooks.bf16_compress_hook)
    return ddp


def forward_through(wrappers: dict[str, DDP], fn):
    """Run `fn() -> ({group: loss}, metrics)` once, as the forward pass of every wrapper in
    `wrappers` (nested): each wrapper's output is its own group's loss, so DDP expects
    exactly that group's gradients from the backward pass of that loss. With none (one
    process), just fn()."""
    if not wrappers:
        return fn()
    (group, ddp), rest = next(iter(wrappers.items())), dict(list(wrappers.items())[1:])
    box = {}

    def inner():
        box["out"] = forward_through(rest, fn)
        return box["out"][0][group]

    loss = ddp(inner)
    losses, metrics = box["out"]
    return {**losses, group: loss}, metrics


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


class _SumAcrossRanks(torch.autograd.Function):
    """y = sum over ranks of x, differentiable: the gradient of every rank's loss with respect
    to the shared sum reaches every rank's x, so backward sums the incoming gradients too."""

    @staticmethod
    def forward(ctx, x):
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        g = grad.clone()
        dist.all_reduce(g)
        return g


class CrossRankBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the global batch (every rank's
    samples), for any backend: torch's `SyncBatchNorm` runs on GPUs only, and gloo on CPU is
    where the tests (and a laptop) run. Each rank's count, mean and sum of squared deviations
    are gathered with the differentiable collective and merged by the parallel-variance rule
    (Chan et al.), as SyncBatchNorm merges them: E[x^2] - E[x]^2 in one sum would lose the
    variance to cancellation when a channel's mean is large beside its spread (with the cycle
    term's large early steps, 2 ranks drifted from one process by up to 6e-2 in float64 after
    3 steps; merged, 2e-8). The backward pass sums every rank's gradient through the shared
    statistics, as SyncBatchNorm's does. Same parameters and buffers as the batch norm it
    replaces: checkpoints and exported models load into plain `BatchNorm` modules."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x):
        if not (self.training and is_distributed()):
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        xf = x.float() if x.dtype != torch.float64 else x
        c, (rank, size) = x.shape[1], world()
        shape = [1, c] + [1] * (x.dim() - 2)
        n = torch.full((1,), xf.numel() / c, device=x.device, dtype=xf.dtype)
        mean_r = xf.mean(dims)
        m2_r = (xf - mean_r.view(shape)).pow(2).sum(dims)
        mine = torch.cat([n, mean_r, m2_r])            # this rank's row of the gathered table
        table = _SumAcrossRanks.apply(torch.stack(
            [mine if r == rank else torch.zeros_like(mine) for r in range(size)]))
        counts, means, m2s = table[:, :1], table[:, 1:c + 1], table[:, c + 1:]
        total = counts.sum()
        mean = (counts * means).sum(0) / total
        var = ((m2s.sum(0) + (counts * (means - mean).pow(2)).sum(0)) / total).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * total / (total - 1))
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Batch norm over the global batch (`--sync-bn`): torch's SyncBatchNorm on CUDA, our
    `CrossRankBatchNorm` elsewhere. Without it every worker normalises by its own share of the
    batch: 4 workers x 25 is not the paper's batch of 100 for batch norm."""
    if not is_distributed():
        return module
    if next(module.parameters()).is_cuda:
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _swap_bn(module)


def _swap_bn(module: torch.nn.Module) -> torch.nn.Module:
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and \
            not isinstance(module, CrossRankBatchNorm):
        new = CrossRankBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                 module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new.to(module.running_mean.device if module.running_mean is not None else "cpu")
    for name, child in module.named_children():
        module.add_module(name, _swap_bn(child))
    return module
