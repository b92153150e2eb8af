"""What the baselines share: two-phase step counting and the models they are built from."""
from __future__ import annotations

import math

import torch

from ..models import ALI, build
from ..models.networks import Encoder, init_weights

# The two-phase baselines train their GAN for the trial's `steps`, then the encoder for this
# fraction of it more: the encoder sees a fixed decoder, so it needs fewer steps than the game.
INFERENCE_FRACTION = 0.5


def phase_steps(steps: int) -> tuple[int, int]:
    """(GAN steps, encoder steps) of a two-phase baseline given the trial's step budget."""
    return steps, max(1, math.ceil(INFERENCE_FRACTION * steps))


def gan_with_encoder(preset, init_std: float | None, name: str) -> ALI:
    """A GAN (decoder + D(x)) carrying an encoder with ALI's architecture. `variant` is set to
    the method's name: evaluation titles its figures with it."""
    model = build(preset, "gan", init_std)
    model.encoder = Encoder(model.preset)
    init_weights(model.encoder, model.preset.init_std if init_std is None else init_std)
    model.variant = name
    return model


class GanView(torch.nn.Module):
    """A decoder and a D(x) seen as a plain GAN (no encoder), for a first phase trained by
    `TrainStep`: the modules are shared, so training the view trains the baseline's model."""

    def __init__(self, decoder: torch.nn.Module, discriminator: torch.nn.Module, z_dim: int):
        super().__init__()
        self.decoder, self.discriminator = decoder, discriminator
        self.encoder = None
        self.z_dim = z_dim

    @property
    def generator_params(self) -> list[torch.nn.Parameter]:
        return list(self.decoder.parameters())

    def prior(self, n: int, device=None, generator=None) -> torch.Tensor:
        return torch.randn(n, self.z_dim, device=device)
