"""The learning-rate schedule: a constant rate for the first `hold` share of the run, then a
decay to `final` times the rate at the last step.

A GAN's samples sharpen only once the rate falls: at a constant rate the generator keeps
moving between the discriminator's updates, and on the toy's σ = 0.05 modes that motion alone
puts most samples outside 3σ. The factor is a pure function of the step, so a resumed or
rolled-back run needs nothing saved beyond its step and its rollback count.
"""
from __future__ import annotations

import math

DECAYS = ("none", "cosine", "linear")


def lr_factor(step: int, total: int, decay: str = "none", hold: float = 0.0,
              final: float = 0.01) -> float:
    """The multiplier of the base learning rate for the update that makes step `step + 1`."""
    if decay not in DECAYS:
        raise ValueError(f"unknown learning-rate decay {decay!r}; choose one of {DECAYS}")
    start = int(hold * total)
    if decay == "none" or step < start or total <= start:
        return 1.0
    t = min(1.0, (step - start) / max(1, total - 1 - start))
    if decay == "linear":
        return 1.0 - (1.0 - final) * t
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * t))


def check(decay: str, hold: float, final: float) -> None:
    """Reject a schedule that cannot be meant, naming the flag."""
    if decay not in DECAYS:
        raise ValueError(f"--lr-decay must be one of {', '.join(DECAYS)}, got {decay!r}")
    if not 0.0 <= hold <= 1.0:
        raise ValueError(f"--lr-hold is a share of the run in [0, 1], got {hold}")
    if not 0.0 < final <= 1.0:
        raise ValueError(f"--lr-final is a share of --lr in (0, 1], got {final}")
