"""The model users hold after training: an encoder q(z|x), a decoder p(x|z) and the
discriminator they were trained against, with the inference API (encode, decode, reconstruct,
sample). Which parts exist depends on the training method (`ali_dist/methods/`): ALI has all
three and a joint D(x, z); a GAN has no encoder and a D(x); a VAE has no discriminator.

Methods talk to models through three calls, so one adversarial game serves flat and
hierarchical models alike (HALI, `hali.py`, has the same three):
    inference(x)       -> the encoder side's latents, sampled: [z]
    generation(z_top)  -> (x, the decoder side's latents): (G(z), [z])
    discriminator(x, latents) -> one logit per pair
"""
from __future__ import annotations

import torch
from torch import nn

from .networks import Decoder, Discriminator, Encoder, init_weights
from .tables import Preset, get_preset


class ALI(nn.Module):
    def __init__(self, preset: Preset | str, encoder: bool = True,
                 discriminator: str | None = "joint", init_std: float | None = None,
                 name: str = "ali"):
        """`discriminator`: "joint" (D(x, z)), "x" (D(x), a GAN's) or None (a VAE's)."""
        super().__init__()
        self.preset = get_preset(preset) if isinstance(preset, str) else preset
        self.name = name                     # the training method's: figure titles say it
        self.encoder = Encoder(self.preset) if encoder else None
        self.decoder = Decoder(self.preset)
        self.discriminator = None if discriminator is None else \
            Discriminator(self.preset, joint=discriminator == "joint")
        init_weights(self, self.preset.init_std if init_std is None else init_std)

    @property
    def z_dim(self) -> int:
        return self.preset.z_dim

    def prior(self, n: int, device=None, generator=None) -> torch.Tensor:
        """z ~ N(0, I). A `generator` (a CPU one: reproducible across devices) draws on the CPU."""
        dev = device or self._device
        if generator is not None:
            return torch.randn(n, self.z_dim, generator=generator).to(dev)
        return torch.randn(n, self.z_dim, device=dev)

    # --- what training methods use (gradients flow) ---
    def inference(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.encoder(x)]

    def generation(self, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.decoder(z), [z]

    def criticise(self, x: torch.Tensor, latents: list[torch.Tensor]) -> torch.Tensor:
        """D's logits for pairs (x, latents); a D(x) ignores the latents."""
        return self.discriminator(x, latents[0] if self.discriminator.d_z is not None else None)

    # --- the inference API (eval mode, no gradients): what a trained ALI is for ---
    @torch.no_grad()
    def encode(self, x: torch.Tensor, sample: bool = True) -> torch.Tensor:
        """x -> z ~ q(z|x) (or its mean with `sample=False`), shape (B, z_dim)."""
        if self.encoder is None:
            raise RuntimeError(f"a {self.name} model has no encoder: train method 'ali' (or "
                               f"a baseline with one) to encode")
        return self.encoder(x.to(self._device), sample=sample)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, z_dim) -> x; images in [0, 1]."""
        return self.decoder(z.to(self._device))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, sample: bool = True) -> torch.Tensor:
        return self.decode(self.encode(x, sample=sample))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.decode(self.prior(n, generator=generator))

    @property
    def _device(self):
        return next(self.parameters()).device
