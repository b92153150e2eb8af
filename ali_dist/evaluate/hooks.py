"""How evaluation calls a model's inference API, in one place, so that hierarchical (HALI) and
conditional models plug in through their own API without the evaluations knowing them:

    levels(model)       the latent levels to evaluate: (None,) for ALI; a HALI model says
                        `levels = (1, 2)` (z1 and z2), and every grid and error is made per level
    conditional(model)  whether sample/reconstruct take y (a conditional model's
                        `conditional = True`)
    reconstruct / encode / decode / sample   pass `level=` and `y=` only where they apply
"""
from __future__ import annotations

import torch


def levels(model) -> tuple:
    if getattr(model, "levels", None):
        return tuple(model.levels)
    return (1, 2) if getattr(model, "is_hierarchical", False) else (None,)


def conditional(model) -> bool:
    return bool(getattr(model, "conditional", False))


def _kw(model, level=None, y=None) -> dict:
    kw = {} if level is None else {"level": level}
    if conditional(model):
        kw["y"] = y
    return kw


def level_suffix(level) -> str:
    """`_z1`, `_z2` for HALI's levels; nothing for ALI's one z."""
    return "" if level is None else f"_z{level}"


@torch.no_grad()
def reconstruct(model, x: torch.Tensor, y=None, level=None) -> torch.Tensor:
    return model.reconstruct(x, **_kw(model, level, y))


@torch.no_grad()
def encode(model, x: torch.Tensor, y=None, level=None) -> torch.Tensor:
    """The encoder's mean code (what interpolations start from)."""
    return model.encode(x, sample=False, **_kw(model, level, y))


@torch.no_grad()
def decode(model, z: torch.Tensor, y=None, level=None) -> torch.Tensor:
    return model.decode(z, **_kw(model, level, y))


@torch.no_grad()
def sample(model, n: int, generator=None, y=None) -> torch.Tensor:
    return model.sample(n, generator=generator, **({"y": y} if conditional(model) else {}))
