"""A VAE with ALI's encoder and decoder (paper section 4.5, Figure 8), trained by the negative
evidence lower bound:

    -log N(x; G(z), s^2 I) + KL(q(z|x) || N(0, I)),   z = mu(x) + sigma(x) * eps

The decoder's likelihood has a fixed standard deviation s (not learned). For vector data it is
the toy mixture's component std (0.05): reconstructions are then weighed at the data's own noise
level, which is the small variance that gives the VAE its sharpest fit on the toy. Images use
DECODER_STD_IMAGES on pixels in [0, 1].
"""
from __future__ import annotations

import math

import torch

from ..data import toy
from .base import Batch, Method, Phase, Stage

DECODER_STD_IMAGES = 0.1


def decoder_std(preset) -> float:
    return DECODER_STD_IMAGES if preset.is_image else toy.STD


def negative_elbo(x, x_rec, mu, log_sigma, std: float):
    """(reconstruction term, KL term), each summed over dimensions and averaged over the batch;
    the reconstruction term includes the Gaussian's normaliser, so the sum is the -ELBO in nats."""
    d = x[0].numel()
    sq = (x - x_rec).pow(2).flatten(1).sum(1)
    rec = sq / (2 * std ** 2) + d * (math.log(std) + 0.5 * math.log(2 * math.pi))
    kl = 0.5 * (mu.pow(2) + (2 * log_sigma).exp() - 1 - 2 * log_sigma).sum(1)
    return rec.mean(), kl.mean()


class VAE(Method):
    name = "vae"

    def __init__(self, model):
        super().__init__(model)
        self.std = decoder_std(model.preset)

    def groups(self):
        return {"g": [self.model.encoder, self.model.decoder]}

    def stages(self, total: int) -> list[Stage]:
        return [Stage("train", total, (Phase("elbo", ("g",)),))]

    def loss(self, phase: str, batch: Batch, ctx: dict):
        m = self.model
        mu, log_sigma = m.encoder.moments(batch.x)
        z = mu + log_sigma.exp() * torch.randn_like(mu)
        rec, kl = negative_elbo(batch.x, m.decoder(z), mu, log_sigma, self.std)
        return {"g": rec + kl}, {"loss": (rec + kl).detach(), "recon_nll": rec.detach(),
                                 "kl": kl.detach()}

