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
    where the tests (and a laptop) run. The per-channel sums are all-reduced with the
    differentiable collective, so the backward pass sums every rank's gradient through the
    shared statistics, as SyncBatchNorm's does. Same parameters and buffers as the batch norm
    it replaces: checkpoints and exported models load into plain `BatchNorm` modules."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x):
        if not (self.training and is_distributed()):
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        xf = x.float()
        n = torch.tensor([xf.numel() / xf.shape[1]], device=x.device)
        stats = _SumAcrossRanks.apply(torch.cat([xf.sum(dims), xf.pow(2).sum(dims), n]))
        c = x.shape[1]
        total = stats[-1]
        mean = stats[:c] / total
        var = (stats[c:2 * c] / total - mean.pow(2)).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * total / (total - 1))
        shape = [1, c] + [1] * (x.dim() - 2)
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
