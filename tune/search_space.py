"""What a study searches. The ranges are drawn around the preset's own values (the one place
hyper-parameters live is `ali_dist/models/tables.py`): a decade either side for the learning
rate and the init std (log-uniform), and a fixed band for beta1 (uniform).

The toy study trains every model of a setting with the same (lr, beta1, init std, seed): the
draws are paired, so "ALI vs GAN" compares the two at identical hyper-parameters, and the
spread across settings is the paper's "random learning rate and beta1, random init std".
"""
from __future__ import annotations

import numpy as np
from ray import tune

from ali_dist.models import get_preset

DECADES = 1.0               # log10 half-width of the lr and init-std ranges
BETA1 = (0.1, 0.9)          # the paper's 0.5 and PacGAN's 0.8 both inside


def _around(value: float):
    return tune.loguniform(value / 10 ** DECADES, value * 10 ** DECADES)


def toy_space(preset_name: str) -> dict:
    """lr, beta1 and init std, as in the paper's toy study."""
    p = get_preset(preset_name)
    return {"lr": _around(p.lr), "beta1": tune.uniform(*BETA1), "init_std": _around(p.init_std)}


def image_space(preset_name: str) -> dict:
    """lr and beta1 (the mission's search for image presets; init std stays the paper's)."""
    p = get_preset(preset_name)
    return {"lr": _around(p.lr), "beta1": tune.uniform(*BETA1)}


def draw_settings(space: dict, n: int, seed: int) -> list[dict]:
    """n settings drawn from `space` with a seeded generator (reproducible studies), each with
    its own training seed and its index."""
    rs = np.random.RandomState(seed)
    out = []
    for i in range(n):
        s = {k: float(d.sample(random_state=rs)) for k, d in space.items()}
        s.update(seed=int(rs.randint(0, 2 ** 31 - 1)), index=i)
        out.append(s)
    return out


def describe(space: dict) -> str:
    parts = []
    for k, d in space.items():
        kind = type(d.get_sampler()).__name__.replace("_", "").lower()
        parts.append(f"{k} ~ {kind}({d.lower:.3g}, {d.upper:.3g})")
    return ", ".join(parts)
