"""One ALI training step: the two phases, precision and gradient scaling.

Knows the model and the losses; nothing of where batches come from or where results go.
Every entry point (the Ray worker, Tune trials, tests) trains through `TrainStep`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from . import distributed, losses
from .models import ALI

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
UPDATES = ("simultaneous", "alternating")


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto": bf16 autocast on CUDA, fp32 elsewhere (CPU autocast is slower than fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


@dataclass
class Optimizers:
    d: torch.optim.Optimizer
    g: torch.optim.Optimizer  # encoder and decoder together


def make_optimizers(model: ALI, lr: float, beta1: float, beta2: float) -> Optimizers:
    """Adam with the paper's values (beta2 = 0.999: the paper prints Blocks' 1 - beta2)."""
    betas = (beta1, beta2)
    return Optimizers(d=torch.optim.Adam(model.discriminator.parameters(), lr=lr, betas=betas),
                      g=torch.optim.Adam(model.generator_params, lr=lr, betas=betas))


class TrainStep:
    """`step(x)` runs one update of D and of E/G on a batch and returns detached metrics.

    update="simultaneous" (the original code): both losses from one forward pass, both
    gradients taken on the same batch and applied together. update="alternating": a D update,
    then a fresh forward pass for the E/G update (the common variant).
    """

    def __init__(self, model: ALI, opt: Optimizers, device: torch.device,
                 precision: str = "auto", update: str = "simultaneous", r1: float = 0.0,
                 r1_every: int = 1):
        if update not in UPDATES:
            raise ValueError(f"unknown update {update!r}; choose one of {UPDATES}")
        self.model, self.opt, self.device, self.update = model, opt, device, update
        self.precision = resolve_precision(precision, device)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        self.autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else \
            contextlib.nullcontext
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self.d_params = list(model.discriminator.parameters())
        self.g_params = model.generator_params
        self.r1, self.r1_every, self.calls = r1, max(1, r1_every), 0

    def _logits(self, x, z, generator_grad: bool = True, penalty: bool = False):
        """D on the encoder pairs (x, E(x)) and the decoder pairs (G(z), z), in one D pass
        (D's batch norm sees both halves, as in the original code). With `penalty`, also the
        R1 term: the squared norm of D's gradient at the encoder pairs, taken in the same pass."""
        m = self.model
        with contextlib.nullcontext() if generator_grad else torch.no_grad():
            x_fake = m.decoder(z).to(x.dtype)
            z_hat = m.encoder(x).to(z.dtype) if m.encoder is not None else None
        if penalty:
            x = x.detach().requires_grad_(True)
            if z_hat is not None and not z_hat.requires_grad:
                z_hat = z_hat.detach().requires_grad_(True)
        xs = torch.cat([x, x_fake])
        logits = m.discriminator(xs) if z_hat is None else \
            m.discriminator(xs, torch.cat([z_hat, z]))
        real, fake = logits.float().chunk(2)
        if not penalty:
            return real, fake, None
        inputs = [x] if z_hat is None else [x, z_hat]
        grads = torch.autograd.grad(real.sum(), inputs, create_graph=True)
        r1 = sum(g.float().flatten(1).pow(2).sum(1) for g in grads).mean()
        return real, fake, r1

    def _d_loss(self, real, fake, r1):
        """D's loss, plus the lazy R1 penalty every `r1_every` steps (scaled to match)."""
        loss = losses.discriminator_loss(real, fake)
        return loss if r1 is None else loss + self.r1 * self.r1_every / 2 * r1

    def _apply(self, pairs):
        """Backward each (loss, params) pair, average gradients across ranks, step."""
        for i, (loss, params, _) in enumerate(pairs):
            self.scaler.scale(loss).backward(inputs=params, retain_graph=i < len(pairs) - 1)
        distributed.sync_grads_([p for _, params, _ in pairs for p in params])
        for _, _, opt in pairs:
            self.scaler.step(opt)
        self.scaler.update()

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.model.train()
        x = x.to(self.device, non_blocking=True)
        z = self.model.prior(x.shape[0], device=self.device)
        for o in (self.opt.d, self.opt.g):
            o.zero_grad(set_to_none=True)
        penalty = self.r1 > 0 and self.calls % self.r1_every == 0
        self.calls += 1
        if self.update == "simultaneous":
            with self.autocast():
                real, fake, r1 = self._logits(x, z, penalty=penalty)
            loss_d = self._d_loss(real, fake, r1)
            loss_g = losses.generator_loss(real, fake)
            self._apply([(loss_d, self.d_params, self.opt.d), (loss_g, self.g_params, self.opt.g)])
        else:
            with self.autocast():
                real, fake, r1 = self._logits(x, z, generator_grad=False, penalty=penalty)
            loss_d = self._d_loss(real, fake, r1)
            self._apply([(loss_d, self.d_params, self.opt.d)])
            with self.autocast():
                real, fake, _ = self._logits(x, z)
            loss_g = losses.generator_loss(real, fake)
            self._apply([(loss_g, self.g_params, self.opt.g)])
        out = {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(),
               "d_acc": losses.discriminator_accuracy(real, fake).detach(),
               "d_real": torch.sigmoid(real).mean().detach(),
               "d_fake": torch.sigmoid(fake).mean().detach()}
        if r1 is not None:
            out["r1"] = r1.detach()
        return out
