"""Hierarchical ALI (HALI; Belghazi et al., "Hierarchical Adversarially Learned Inference",
2018): the Markov chain x -> z1 -> z2 on both sides,

    encoder  q(x, z1, z2) = q(x) q(z1 | x) q(z2 | z1)
    decoder  p(x, z1, z2) = p(z2) p(z1 | z2) p(x | z1),      p(z2) = N(0, I)

with Gaussian reparametrised conditionals (mu and log sigma heads, z = mu + sigma * eps) and
one discriminator on (x, z1, z2). z1 is a feature map, z2 a vector. The tables are the ALI
tables cut at z1 (`tables._hali`; README, "HALI").

The same three calls as `ALI` (`ali.py`), so the adversarial game (`methods/adversarial.py`)
trains it unchanged:
    inference(x, y)          -> [z1, z2]
    generation(z2, y)        -> (x, [z1, z2])
    criticise(x, [z1, z2], y) -> one logit per triple
and the inference API at either level: `encode(x, level=1|2)`, `decode(z, level=1|2)`,
`reconstruct(x, level=1|2)` (level 1: x -> z1 -> x, the faithful one; level 2: x -> z1 ->
z2 -> z1 -> x, the abstract one), `sample(n)`. The level defaults to 2, the top latent, which
plays ALI's z: the prior is over it and `decode(encode(x))` passes through it.
"""
from __future__ import annotations

import torch

from .base import LatentModel
from .networks import (HierarchicalDecoder, HierarchicalDiscriminator, HierarchicalEncoder,
                       init_weights)
from .tables import Preset, z1_size

LEVELS = (1, 2)


class HALI(LatentModel):
    def __init__(self, preset: Preset | str, init_std: float | None = None, name: str = "hali",
                 conditional: bool = False, y_dim: int | None = None):
        super().__init__(preset, name, conditional, y_dim)
        if not self.preset.is_hierarchical:
            raise ValueError(f"preset {self.preset.name!r} has one latent: build it as ALI")
        self.encoder = HierarchicalEncoder(self.preset, self.y_dim)
        self.decoder = HierarchicalDecoder(self.preset, self.y_dim)
        self.discriminator = HierarchicalDiscriminator(self.preset, self.y_dim)
        init_weights(self, self.preset.init_std if init_std is None else init_std)

    @property
    def z1_shape(self) -> tuple[int, int, int]:
        """z1's (channels, height, width)."""
        s = z1_size(self.preset)
        return self.preset.hierarchy.z1_channels, s, s

    # --- what training methods use (gradients flow) ---
    def inference(self, x: torch.Tensor, y=None) -> list[torch.Tensor]:
        return self.encoder(x, self.condition(y))

    def generation(self, z2: torch.Tensor, y=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x, z1 = self.decoder(z2, self.condition(y))
        return x, [z1, z2]

    def criticise(self, x: torch.Tensor, latents: list[torch.Tensor], y=None) -> torch.Tensor:
        z1, z2 = latents
        return self.discriminator(x, z1, z2, self.condition(y))

    # --- the inference API (eval mode, no gradients) ---
    @torch.no_grad()
    def encode(self, x: torch.Tensor, y=None, level: int = 2,
               sample: bool = True) -> torch.Tensor:
        """x -> z1 ~ q(z1 | x) (B, C, H, W) at level 1, or z2 ~ q(z2 | z1) (B, z_dim) at
        level 2 (with `sample=False` the means: mu1, and mu2 of mu1)."""
        _check(level)
        y = self.condition(y, len(x))
        z1 = self.encoder.q_z1(x.to(self._device), y, sample=sample)
        return z1 if level == 1 else self.encoder.q_z2(z1, y, sample=sample)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y=None, level: int | None = None,
               sample: bool = True) -> torch.Tensor:
        """z1 (level 1) or z2 (level 2) -> x in [0, 1]. The level follows from z's shape when
        not given. From z2, z1 ~ p(z1 | z2) is drawn (its mean with `sample=False`)."""
        level = level or (1 if z.dim() == 4 else 2)
        _check(level)
        want = self.z1_shape if level == 1 else (self.z_dim,)
        if tuple(z.shape[1:]) != want:
            raise ValueError(f"level-{level} codes have shape (B, {', '.join(map(str, want))}); "
                             f"got {tuple(z.shape)}")
        y = self.condition(y, len(z))
        z = z.to(self._device)
        if level == 2:
            z = self.decoder.p_z1(z, y, sample=sample)
        return self.decoder.p_x(z, y)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y=None, level: int = 2,
                    sample: bool = True) -> torch.Tensor:
        """x -> z at `level` -> x: level 1 keeps what z1 holds (faithful), level 2 what z2
        holds (more abstract)."""
        return self.decode(self.encode(x, y, level=level, sample=sample), y, level=level,
                           sample=sample)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y=None) -> torch.Tensor:
        """n draws of x ~ p(x | z1) p(z1 | z2) p(z2) (conditional: given y)."""
        return self.decode(self.prior(n, generator=generator), y, level=2)


def _check(level: int) -> None:
    if level not in LEVELS:
        raise ValueError(f"HALI has levels 1 (z1) and 2 (z2); got level={level!r}")
