"""GAN with post-hoc learned inference (paper section 2.2; a Figure 8 baseline): train a GAN
against a D(x), freeze its decoder, then train an encoder with the ALI game against a fresh
joint D(x, z). The encoder must work with whatever the decoder learned; it cannot shape it.

Both stages are the adversarial game of `adversarial.py`; what changes is who plays it. The
game's two sides, "d" and "g", are these optimiser groups in each stage:
    gan      d -> gan_d (the D(x)),  g -> g (the decoder)
    encoder  d -> d (the joint D),   g -> e (the encoder; the decoder is frozen)
"""
from __future__ import annotations

from ..models.networks import Discriminator, init_weights
from .adversarial import Adversarial
from .base import Batch, Phase, Stage, two_stage

ROLES = {"gan": {"d": "gan_d", "g": "g"}, "encoder": {"d": "d", "g": "e"}}


class PostHocInference(Adversarial):
    name = "gan_posthoc"
    critics = ("gan_d", "d")

    def __init__(self, model, init_std: float, **kw):
        super().__init__(model, **kw)
        self.gan_d = Discriminator(model.preset, joint=False)    # the first stage's D(x)
        init_weights(self.gan_d, init_std)
        self._stage = "gan"

    def groups(self):
        m = self.model
        return {"gan_d": [self.gan_d], "g": [m.decoder], "d": [m.discriminator],
                "e": [m.encoder]}

    def stages(self, total: int) -> list[Stage]:
        game = super().stages(total)[0].phases
        return [Stage(name, steps, tuple(Phase(p.name, tuple(ROLES[name][g] for g in p.groups))
                                         for p in game))
                for name, steps in zip(("gan", "encoder"), two_stage(total))]

    def begin_stage(self, stage: Stage) -> None:
        self._stage = stage.name
        self.model.decoder.requires_grad_(stage.name == "gan")

    def loss(self, phase: str, batch: Batch, ctx: dict):
        losses, metrics = super().loss(phase, batch, ctx)
        return {ROLES[self._stage][k]: v for k, v in losses.items()}, metrics

    def generated(self, x, ctx, y=None):
        """The GAN stage has no encoder pairs; the encoder stage's decoder is fixed."""
        if "sides" not in ctx:
            m = self.model
            z = m.prior(x.shape[0], device=x.device)
            x_fake = m.decoder(z).to(x.dtype)
            lat_q = [m.encoder(x).to(z.dtype)] if self._stage == "encoder" else []
            ctx["sides"] = (x_fake, [z], lat_q)
        return ctx["sides"]

    def criticise(self, x, latents, y=None):
        d = self.gan_d if self._stage == "gan" else self.model.discriminator
        return d(x, None) if self._stage == "gan" else d(x, latents[0])
