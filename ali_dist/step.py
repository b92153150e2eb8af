"""One training step of any method (`ali_dist/methods/`): its phases in order, under the run's
precision, each group's loss backpropagated into that group's parameters only, gradients
averaged across ranks, each group's optimiser stepped.

Knows the method interface and nothing of where batches come from or where results go. Every
entry point (the Ray worker, Tune trials, tests, benchmarks) trains through `TrainStep`.
"""
from __future__ import annotations

import contextlib

import torch

from . import distributed
from .methods import Batch, Method, Stage

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto": bf16 autocast on CUDA, fp32 elsewhere (CPU autocast is slower than fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def make_optimizers(method: Method, lr: float, beta1: float,
                    beta2: float) -> dict[str, torch.optim.Optimizer]:
    """One Adam per optimiser group, with the paper's values (beta2 = 0.999: the paper prints
    Blocks' 1 - beta2)."""
    return {g: torch.optim.Adam(params, lr=lr, betas=(beta1, beta2))
            for g, params in method.group_params().items()}


class TrainStep:
    """`step(batch, stage, step)` runs every phase of `stage` once on a batch and returns the
    phases' detached metrics (later phases overwrite earlier ones of the same name)."""

    def __init__(self, method: Method, optimizers: dict[str, torch.optim.Optimizer],
                 device: torch.device, precision: str = "auto"):
        self.method, self.opt, self.device = method, optimizers, device
        self.precision = resolve_precision(precision, device)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        self.autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else \
            contextlib.nullcontext
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self.params = method.group_params()

    def __call__(self, batch: Batch, stage: Stage, step: int) -> dict[str, torch.Tensor]:
        self.method.train()
        batch = Batch(batch.x.to(self.device, non_blocking=True),
                      None if batch.y is None else batch.y.to(self.device, non_blocking=True),
                      batch.extra)
        ctx, metrics = {"step": step}, {}
        for phase in stage.phases:
            for g in phase.groups:
                self.opt[g].zero_grad(set_to_none=True)
            with self.autocast():
                group_losses, m = self.method.loss(phase.name, batch, ctx)
            metrics.update(m)
            last = len(phase.groups) - 1
            for i, g in enumerate(phase.groups):
                self.scaler.scale(group_losses[g]).backward(inputs=self.params[g],
                                                            retain_graph=i < last)
            distributed.sync_grads_([p for g in phase.groups for p in self.params[g]])
            for g in phase.groups:
                self.scaler.step(self.opt[g])
            self.scaler.update()
        return metrics
