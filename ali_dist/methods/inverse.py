"""GAN with a learned inverse mapping (paper section 2.2; a Figure 8 baseline): train a GAN,
freeze its decoder, then fit the encoder so that E(G(z)) recovers z, minimising
E_z ||z - E(G(z))||^2.

The encoder keeps ALI's stochastic output z = mu + sigma * eps and is fitted through it, so
the expected error ||z - mu||^2 + sum(sigma^2) also drives sigma towards the residual error:
`encode(x)` then samples a meaningful posterior instead of an untrained sigma.
"""
from __future__ import annotations

import torch

from .adversarial import Adversarial
from .base import Batch, Phase, Stage, two_stage


class InverseMapping(Adversarial):
    name = "gan_inverse"

    def groups(self):
        m = self.model
        return {"d": [m.discriminator], "g": [m.decoder], "e": [m.encoder]}

    def stages(self, total: int) -> list[Stage]:
        gan, enc = two_stage(total)
        gan_phases = super().stages(gan)[0].phases
        return [Stage("gan", gan, gan_phases), Stage("encoder", enc, (Phase("invert", ("e",)),))]

    def begin_stage(self, stage: Stage) -> None:
        self.model.decoder.requires_grad_(stage.name == "gan")

    def generated(self, x, ctx, y=None):
        """The GAN stage's sides: a GAN has no encoder pairs (the encoder waits its turn)."""
        if "sides" not in ctx:
            m = self.model
            z = m.prior(x.shape[0], device=x.device)
            x_fake, lat_p = m.generation(z)
            ctx["sides"] = (x_fake.to(x.dtype), [v.to(z.dtype) for v in lat_p], [])
        return ctx["sides"]

    def loss(self, phase: str, batch: Batch, ctx: dict):
        if phase != "invert":
            return super().loss(phase, batch, ctx)
        m = self.model
        with torch.no_grad():                    # the decoder is fixed: sample it as users do
            m.decoder.eval()
            z = m.prior(batch.x.shape[0], device=batch.x.device)
            x_fake = m.decoder(z)
            m.decoder.train()
        z_error = (m.encoder(x_fake) - z).pow(2).sum(1).mean()
        return {"e": z_error}, {"z_error": z_error.detach()}
