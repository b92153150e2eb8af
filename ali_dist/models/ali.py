"""The model users hold: ALI (encoder, decoder, joint discriminator) or its GAN variant."""
from __future__ import annotations

import torch
from torch import nn

from .networks import Decoder, Discriminator, Encoder, init_weights
from .tables import Preset, get_preset

VARIANTS = ("ali", "gan")


class ALI(nn.Module):
    """`variant="ali"`: encoder q(z|x), decoder p(x|z), discriminator on (x, z).
    `variant="gan"`: the same decoder and discriminator trunk; no encoder; D sees x only."""

    def __init__(self, preset: Preset | str, variant: str = "ali", init_std: float | None = None):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
        self.preset = get_preset(preset) if isinstance(preset, str) else preset
        self.variant = variant
        self.encoder = Encoder(self.preset) if variant == "ali" else None
        self.decoder = Decoder(self.preset)
        self.discriminator = Discriminator(self.preset, joint=variant == "ali")
        init_weights(self, self.preset.init_std if init_std is None else init_std)

    @property
    def z_dim(self) -> int:
        return self.preset.z_dim

    @property
    def generator_params(self) -> list[nn.Parameter]:
        """What the generator phase updates: encoder and decoder together."""
        nets = [self.decoder] + ([self.encoder] if self.encoder is not None else [])
        return [p for n in nets for p in n.parameters()]

    def prior(self, n: int, device=None, generator=None) -> torch.Tensor:
        """z ~ N(0, I). A `generator` (a CPU one: reproducible across devices) draws on the CPU."""
        dev = device or next(self.parameters()).device
        if generator is not None:
            return torch.randn(n, self.z_dim, generator=generator).to(dev)
        return torch.randn(n, self.z_dim, device=dev)

    # --- inference API (eval mode, no gradients): what a trained ALI is for ---
    @torch.no_grad()
    def encode(self, x: torch.Tensor, sample: bool = True) -> torch.Tensor:
        """x -> z ~ q(z|x) (or its mean with `sample=False`), shape (B, z_dim)."""
        if self.encoder is None:
            raise RuntimeError("a GAN has no encoder: train variant='ali' to encode")
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


def build(preset: str | Preset = "toy", variant: str = "ali", init_std: float | None = None) -> ALI:
    """An untrained model for a preset (see `ali_dist.models.tables.PRESETS`)."""
    return ALI(preset, variant, init_std)
