"""ALI and its GAN variant: the paper's adversarial game (section 2, eq. 4).

D tells encoder pairs (x, E(x)) from decoder pairs (G(z), z); the encoder and decoder ("g")
play against it with the non-saturating loss. The model's `inference`/`generation`/
`criticise` calls define the pairs, so HALI's (x, z1, z2) game is this same code. A GAN is
the game with no encoder and a D(x). A conditional model (paper eq. 7) plays it with the
batch's y on both sides: encoder pairs (x, E(x, y), y) against decoder pairs (G(z, y), z, y),
y drawn from the data (as the authors' conditional code does).

Updates:
  simultaneous  (the original code) one phase: both losses from one forward pass, D's
                gradient and E/G's taken on the same batch and applied together
  alternating   a D phase, then an E/G phase; E/G run forward once per step (the D phase
                keeps their outputs and trains D on detached copies), `d_steps` D phases
                first when asked
R1 (ours, off in the paper presets): gamma/2 * |grad_x D|^2 at the encoder pairs, added to
D's loss every `r1_every` steps (times r1_every), taken in the same D pass so D's batch norm
sees the same mixed batch of encoder and decoder pairs as without it. Only the gradient with
respect to x is penalised: D must stay free to be sharp in z, where it checks that x and z
belong together (what teaches the encoder).
"""
from __future__ import annotations

import torch

from .. import losses
from .base import Batch, Method, Phase, Stage

UPDATES = ("simultaneous", "alternating")


class Adversarial(Method):
    name = "ali"
    critics = ("d",)        # the E/G loss backpropagates through D into E and G

    def __init__(self, model, update: str = "simultaneous", r1: float = 0.0,
                 r1_every: int = 1, d_steps: int = 1, cycle: float = 0.0,
                 cycle_until: float = 1.0):
        super().__init__(model)
        if update not in UPDATES:
            raise ValueError(f"unknown update {update!r}; choose one of {UPDATES}")
        if d_steps > 1 and update != "alternating":
            raise ValueError("--d-steps above 1 needs --update alternating")
        self.update, self.r1, self.r1_every, self.d_steps = update, r1, max(1, r1_every), d_steps
        if cycle and (model.encoder is None or model.preset.is_hierarchical):
            raise ValueError("the cycle term needs a flat model with an encoder (not a GAN, "
                             "not HALI)")
        self.cycle, self.cycle_until, self.cycle_stop = cycle, cycle_until, None

    def groups(self):
        m = self.model
        return {"d": [m.discriminator], "g": [n for n in (m.encoder, m.decoder) if n is not None]}

    def differentiated_twice(self):
        return self.critics if self.r1 > 0 else ()      # R1 backpropagates D's input gradient

    def stages(self, total: int) -> list[Stage]:
        self.cycle_stop = round(self.cycle_until * total)     # the cycle term's last step + 1
        if self.update == "simultaneous":
            phases = (Phase("joint", ("d", "g")),)
        else:
            phases = (Phase("d", ("d",)),) * self.d_steps + (Phase("g", ("g",)),)
        return [Stage("train", total, phases)]

    def loss(self, phase: str, batch: Batch, ctx: dict):
        penalty = self.r1 > 0 and phase in ("joint", "d") and ctx["step"] % self.r1_every == 0 \
            and not ctx.get("penalised")
        y = batch.y if self.model.conditional else None
        if phase == "joint":
            real, fake, r1 = self.logits(batch.x, ctx, detach=False, penalty=penalty, y=y)
            metrics = self._metrics(real, fake, r1)
            return ({"d": self._d_loss(real, fake, r1),
                     "g": self._g_loss(real, fake, batch.x, ctx, y, metrics)}, metrics)
        if phase == "d":
            real, fake, r1 = self.logits(batch.x, ctx, detach=True, penalty=penalty, y=y)
            ctx["penalised"] = ctx.get("penalised") or penalty
            return {"d": self._d_loss(real, fake, r1)}, self._metrics(real, fake, r1)
        if phase == "g":
            real, fake, _ = self.logits(batch.x, ctx, detach=False, penalty=False, y=y)
            metrics = {"loss_g": losses.generator_loss(real, fake).detach()}
            return {"g": self._g_loss(real, fake, batch.x, ctx, y, metrics)}, metrics
        raise ValueError(f"{self.name} has no phase {phase!r}")

    def generated(self, x: torch.Tensor, ctx: dict, y=None):
        """This step's encoder and decoder sides, computed once and shared by its phases:
        (x_fake, decoder latents, encoder latents)."""
        if "sides" not in ctx:
            m = self.model
            z = m.prior(x.shape[0], device=x.device)
            x_fake, lat_p = m.generation(z, y)
            lat_q = m.inference(x, y) if m.encoder is not None else []
            ctx["sides"] = (x_fake.to(x.dtype), [v.to(z.dtype) for v in lat_p],
                            [v.to(z.dtype) for v in lat_q])
        return ctx["sides"]

    def logits(self, x, ctx: dict, detach: bool, penalty: bool, y=None):
        """D on the encoder pairs and the decoder pairs in one pass (D's batch norm sees both
        halves, as in the original code): (real logits, fake logits, R1 term or None). Both
        halves carry the batch's y, if any."""
        x_fake, lat_p, lat_q = self.generated(x, ctx, y)
        if detach:
            x_fake, lat_p, lat_q = x_fake.detach(), [v.detach() for v in lat_p], \
                [v.detach() for v in lat_q]
        if penalty:
            x = x.detach().requires_grad_(True)
        latents = [torch.cat([q, p]) for q, p in zip(lat_q, lat_p)] if lat_q else lat_p
        logits = self.criticise(torch.cat([x, x_fake]), latents,
                                None if y is None else torch.cat([y, y]))
        real, fake = logits.float().chunk(2)
        if not penalty:
            return real, fake, None
        (grad,) = torch.autograd.grad(real.sum(), [x], create_graph=True)
        return real, fake, grad.float().flatten(1).pow(2).sum(1).mean()

    def _g_loss(self, real, fake, x, ctx: dict, y, metrics: dict):
        """E/G's loss: the game's, plus `cycle` x the squared error of G(E(x)) against x (the
        explicit cycle term, ours; 0 in every paper preset) for the first `cycle_until` share
        of the run."""
        loss = losses.generator_loss(real, fake)
        if not self.cycle or (self.cycle_stop is not None and ctx["step"] >= self.cycle_stop):
            return loss
        _, _, lat_q = self.generated(x, ctx, y)
        m = self.model
        recon = m.decoder(lat_q[0], m.condition(y)).float()
        err = (recon - x.float()).pow(2).mean()
        metrics["cycle_mse"] = err.detach()
        return loss + self.cycle * err

    def criticise(self, x, latents, y=None):
        """The discriminator this method's game is played against (the model's own)."""
        return self.model.criticise(x, latents, y)

    def _d_loss(self, real, fake, r1):
        loss = losses.discriminator_loss(real, fake)
        return loss if r1 is None else loss + self.r1 * self.r1_every / 2 * r1

    @staticmethod
    def _metrics(real, fake, r1) -> dict:
        out = {"loss_d": losses.discriminator_loss(real, fake).detach(),
               "loss_g": losses.generator_loss(real, fake).detach(),
               "d_acc": losses.discriminator_accuracy(real, fake).detach(),
               "d_real": torch.sigmoid(real).mean().detach(),
               "d_fake": torch.sigmoid(fake).mean().detach()}
        if r1 is not None:
            out["r1"] = r1.detach()
        return out


class GAN(Adversarial):
    """The same game with no encoder: D sees x only (the paper's comparison)."""
    name = "gan"

