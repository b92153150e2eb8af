"""The model users hold after training: an encoder q(z|x), a decoder p(x|z) and the
discriminator they were trained against, with the inference API (encode, decode, reconstruct,
sample). Which parts exist depends on the training method (`ali_dist/methods/`): ALI has all
three and a joint D(x, z); a GAN has no encoder and a D(x); a VAE has no discriminator.

Methods talk to models through three calls, so one adversarial game serves flat and
hierarchical models alike (HALI, `hali.py`, has the same three):
    inference(x, y)       -> the encoder side's latents, sampled: [z]
    generation(z_top, y)  -> (x, the decoder side's latents): (G(z), [z])
    criticise(x, latents, y) -> one logit per pair
y is the batch's labels or attributes for a conditional model (paper eq. 7), else None.
"""
from __future__ import annotations

import torch

from .base import LatentModel
from .networks import Decoder, Discriminator, Encoder, init_weights
from .tables import Preset


class ALI(LatentModel):
    def __init__(self, preset: Preset | str, encoder: bool = True,
                 discriminator: str | None = "joint", init_std: float | None = None,
                 name: str = "ali", conditional: bool = False, y_dim: int | None = None):
        """`discriminator`: "joint" (D(x, z)), "x" (D(x), a GAN's) or None (a VAE's).
        `conditional`: every network reads y (`y_dim` classes or attributes; default: the
        preset's)."""
        super().__init__(preset, name, conditional, y_dim)
        if self.preset.is_hierarchical:
            raise ValueError(f"preset {self.preset.name!r} is hierarchical: build it as HALI")
        self.encoder = Encoder(self.preset, self.y_dim) if encoder else None
        self.decoder = Decoder(self.preset, self.y_dim)
        self.discriminator = None if discriminator is None else \
            Discriminator(self.preset, joint=discriminator == "joint", y_dim=self.y_dim)
        init_weights(self, self.preset.init_std if init_std is None else init_std)

    # --- what training methods use (gradients flow) ---
    def inference(self, x: torch.Tensor, y=None) -> list[torch.Tensor]:
        return [self.encoder(x, self.condition(y))]

    def generation(self, z: torch.Tensor, y=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.decoder(z, self.condition(y)), [z]

    def criticise(self, x: torch.Tensor, latents: list[torch.Tensor], y=None) -> torch.Tensor:
        """D's logits for pairs (x, latents); a D(x) ignores the latents."""
        z = latents[0] if self.discriminator.d_z is not None else None
        return self.discriminator(x, z, self.condition(y))

    # --- the inference API (eval mode, no gradients): what a trained ALI is for ---
    @torch.no_grad()
    def encode(self, x: torch.Tensor, y=None, sample: bool = True) -> torch.Tensor:
        """x -> z ~ q(z|x) (or its mean with `sample=False`), shape (B, z_dim). A conditional
        model takes y: class labels or attributes, one per image (or one for all)."""
        if self.encoder is None:
            raise RuntimeError(f"a {self.name} model has no encoder: train method 'ali' (or "
                               f"a baseline with one) to encode")
        return self.encoder(x.to(self._device), self.condition(y, len(x)), sample=sample)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y=None) -> torch.Tensor:
        """z (B, z_dim) -> x; images in [0, 1]."""
        return self.decoder(z.to(self._device), self.condition(y, len(z)))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y=None, sample: bool = True) -> torch.Tensor:
        return self.decode(self.encode(x, y, sample=sample), y)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y=None) -> torch.Tensor:
        """n draws of x ~ p(x | z) p(z) (conditional: p(x | z, y), y one per draw or one for
        all)."""
        return self.decode(self.prior(n, generator=generator), y)
