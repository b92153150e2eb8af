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
from .method import gan_with_encoder

DECODER_STD_IMAGES = 0.1


def decoder_std(preset) -> float:
    return DECODER_STD_IMAGES if preset.is_image else toy.STD


def negative_elbo(x, x_rec, mu, log_sigma, std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction term, KL term), each summed over dimensions and averaged over the batch;
    the reconstruction term includes the Gaussian's normaliser, so the sum is the -ELBO in nats."""
    d = x[0].numel()
    sq = (x - x_rec).pow(2).flatten(1).sum(1)
    rec = sq / (2 * std ** 2) + d * (math.log(std) + 0.5 * math.log(2 * math.pi))
    kl = 0.5 * (mu.pow(2) + (2 * log_sigma).exp() - 1 - 2 * log_sigma).sum(1)
    return rec.mean(), kl.mean()


class VAE:
    name = "vae"

    def __init__(self, preset, init_std, lr: float, beta1: float, beta2: float,
                 device: torch.device, steps: int, update: str = "simultaneous"):
        self.model = gan_with_encoder(preset, init_std, self.name).to(device)
        self.model.discriminator = None           # a VAE has none
        self.std = decoder_std(self.model.preset)
        self.total_steps = steps
        self.opt = torch.optim.Adam(self.model.generator_params, lr=lr, betas=(beta1, beta2))
        self.phases = [("vae", steps, [self.opt])]     # `update` has no meaning without a D

    def phase(self, step: int) -> str:
        return "vae"

    def __call__(self, x: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        m = self.model
        m.train()
        mu, log_sigma = m.encoder.moments(x)
        z = mu + log_sigma.exp() * torch.randn_like(mu)
        rec, kl = negative_elbo(x, m.decoder(z), mu, log_sigma, self.std)
        self.opt.zero_grad(set_to_none=True)
        (rec + kl).backward()
        self.opt.step()
        return {"loss": (rec + kl).detach(), "recon_nll": rec.detach(), "kl": kl.detach()}
