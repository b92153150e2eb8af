"""GAN with post-hoc learned inference (paper section 2.2): train a GAN, freeze its decoder,
then train an encoder with the ALI game against a fresh discriminator D(x, z). The encoder
must work with whatever the decoder learned; it cannot shape it.
"""
from __future__ import annotations

import torch

from ..models import build
from ..models.networks import Discriminator, init_weights
from ..step import Optimizers, TrainStep, make_optimizers
from .method import GanView, phase_steps


class PostHocInference:
    name = "gan_posthoc"

    def __init__(self, preset, init_std, lr: float, beta1: float, beta2: float,
                 device: torch.device, steps: int, update: str = "simultaneous"):
        self.model = build(preset, "ali", init_std).to(device)   # encoder, decoder, D(x, z)
        self.model.variant = self.name
        std = self.model.preset.init_std if init_std is None else init_std
        self.gan_d = Discriminator(self.model.preset, joint=False)  # phase 1's D(x)
        init_weights(self.gan_d, std)
        self.gan_d.to(device)
        self.gan_steps, enc_steps = phase_steps(steps)
        self.total_steps = self.gan_steps + enc_steps
        gan = GanView(self.model.decoder, self.gan_d, self.model.z_dim)
        self.gan_step = TrainStep(gan, make_optimizers(gan, lr, beta1, beta2), device, "fp32",
                                  update)
        betas = (beta1, beta2)
        self.ali_step = TrainStep(self.model, Optimizers(
            d=torch.optim.Adam(self.model.discriminator.parameters(), lr=lr, betas=betas),
            g=torch.optim.Adam(self.model.encoder.parameters(), lr=lr, betas=betas)),
            device, "fp32", update)
        # The generator phase backpropagates into the encoder only: the decoder is frozen.
        self.ali_step.g_params = list(self.model.encoder.parameters())
        self.phases = [("gan", self.gan_steps, [self.gan_step.opt.d, self.gan_step.opt.g]),
                       ("encoder", enc_steps, [self.ali_step.opt.d, self.ali_step.opt.g])]

    def phase(self, step: int) -> str:
        return "gan" if step <= self.gan_steps else "encoder"

    def __call__(self, x: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        if step <= self.gan_steps:
            return self.gan_step(x)
        if step == self.gan_steps + 1:
            self.model.decoder.requires_grad_(False)
        return self.ali_step(x)
