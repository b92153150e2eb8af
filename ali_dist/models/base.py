"""What ALI (`ali.py`) and HALI (`hali.py`) share: the preset, the prior over the top latent,
the fully observed y of a conditional model, and the device. The networks are theirs."""
from __future__ import annotations

import torch
from torch import nn

from . import condition
from .tables import Preset, get_preset


def condition_dim(preset: Preset, conditional: bool, y_dim: int | None) -> int:
    """The width of y a model reads: 0 unless `conditional`; else `y_dim` or the preset's
    classes / attributes (`Preset.condition_dim`)."""
    if not conditional:
        return 0
    if not preset.condition:
        raise ValueError(f"preset {preset.name!r} has no labels or attributes to condition on "
                         f"(--conditional needs a preset whose data has them)")
    dim = y_dim or preset.condition_dim
    if dim < 1:
        raise ValueError(f"a conditional model needs the number of "
                         f"{'classes' if preset.condition == 'class' else 'attributes'}; got "
                         f"{dim}")
    return dim


class LatentModel(nn.Module):
    """Subclasses build `encoder`, `decoder`, `discriminator` (any may be None) and
    implement the methods' protocol (`inference`, `generation`, `criticise`)."""

    def __init__(self, preset: Preset | str, name: str, conditional: bool = False,
                 y_dim: int | None = None):
        super().__init__()
        self.preset = get_preset(preset) if isinstance(preset, str) else preset
        self.name = name                     # the training method's: figure titles say it
        self.y_dim = condition_dim(self.preset, conditional, y_dim)

    @property
    def z_dim(self) -> int:
        """The prior's width (HALI: z2's)."""
        return self.preset.z_dim

    @property
    def conditional(self) -> bool:
        return self.y_dim > 0

    @property
    def is_hierarchical(self) -> bool:
        return self.preset.is_hierarchical

    def prior(self, n: int, device=None, generator=None) -> torch.Tensor:
        """z ~ N(0, I). A `generator` (a CPU one: reproducible across devices) draws on the CPU."""
        dev = device or self._device
        if generator is not None:
            return torch.randn(n, self.z_dim, generator=generator).to(dev)
        return torch.randn(n, self.z_dim, device=dev)

    def condition(self, y, n: int | None = None) -> torch.Tensor | None:
        """y as the networks read it ((B, y_dim) floats on the model's device), or None for an
        unconditional model. `y`: class indices or attribute vectors (`condition.as_vector`)."""
        if not self.conditional:
            if y is not None:
                raise ValueError(f"this {self.name} model is not conditional: build it with "
                                 f"conditional=True (train with --conditional) to pass y")
            return None
        if y is None:
            what = f"class labels of {self.y_dim} classes" if self.preset.condition == "class" \
                else f"{self.y_dim} binary attributes per example"
            raise ValueError(f"this {self.name} model is conditional: pass y ({what})")
        return condition.as_vector(y, self.preset.condition, self.y_dim, n, device=self._device)

    @property
    def _device(self):
        return next(self.parameters()).device
