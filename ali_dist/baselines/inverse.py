"""GAN with a learned inverse mapping (paper section 2.2): train a GAN, freeze its decoder,
then fit the encoder so that E(G(z)) recovers z, minimising E_z ||z - E(G(z))||^2.

The encoder keeps ALI's stochastic output z = mu + sigma * eps and is fitted through it, so
the expected error ||z - mu||^2 + sum(sigma^2) also drives sigma towards the residual error:
`encode(x)` then samples a meaningful posterior instead of an untrained sigma.
"""
from __future__ import annotations

import torch

from ..step import TrainStep, make_optimizers
from .method import GanView, gan_with_encoder, phase_steps


class InverseMapping:
    name = "gan_inverse"

    def __init__(self, preset, init_std, lr: float, beta1: float, beta2: float,
                 device: torch.device, steps: int, update: str = "simultaneous"):
        self.model = gan_with_encoder(preset, init_std, self.name).to(device)
        self.device = device
        self.gan_steps, enc_steps = phase_steps(steps)
        self.total_steps = self.gan_steps + enc_steps
        gan_view = GanView(self.model.decoder, self.model.discriminator, self.model.z_dim)
        self.gan_step = TrainStep(gan_view, make_optimizers(gan_view, lr, beta1, beta2), device,
                                  "fp32", update)
        self.opt_e = torch.optim.Adam(self.model.encoder.parameters(), lr=lr, betas=(beta1, beta2))
        self.phases = [("gan", self.gan_steps, [self.gan_step.opt.d, self.gan_step.opt.g]),
                       ("encoder", enc_steps, [self.opt_e])]

    def phase(self, step: int) -> str:
        return "gan" if step <= self.gan_steps else "encoder"

    def __call__(self, x: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        if step <= self.gan_steps:
            return self.gan_step(x)
        m = self.model
        with torch.no_grad():                   # the decoder is fixed: sample it as users do
            m.decoder.eval()
            z = m.prior(x.shape[0], device=self.device)
            x_fake = m.decoder(z)
        m.encoder.train()
        self.opt_e.zero_grad(set_to_none=True)
        z_error = (m.encoder(x_fake) - z).pow(2).sum(1).mean()
        z_error.backward()
        self.opt_e.step()
        return {"z_error": z_error.detach()}

