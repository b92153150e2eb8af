"""Training methods: one file each, all driven by the one step and loop (see `base.py`).

    ali          the paper's game: encoder, decoder, joint D(x, z)          (adversarial.py)
    gan          the same game without encoder, D(x)                          (adversarial.py)
    gan_inverse  a GAN, then an encoder fitted to invert its frozen decoder   (inverse.py)
    gan_posthoc  a GAN, then encoder + fresh joint D by the ALI game          (posthoc.py)
    vae          encoder and decoder by the evidence lower bound              (vae.py)

`MODEL_PARTS` says what the model each trains holds (what users load afterwards).
"""
from __future__ import annotations

from .adversarial import GAN, Adversarial
from .base import Batch, Method, Phase, Stage
from .inverse import InverseMapping
from .posthoc import PostHocInference
from .vae import VAE

METHODS: dict[str, type[Method]] = {m.name: m for m in (
    Adversarial, GAN, InverseMapping, PostHocInference, VAE)}

# method -> (has an encoder, its discriminator: "joint", "x" or None)
MODEL_PARTS = {"ali": (True, "joint"), "gan": (False, "x"), "gan_inverse": (True, "x"),
               "gan_posthoc": (True, "joint"), "vae": (True, None)}

BASELINES = ("gan_inverse", "gan_posthoc", "vae")     # the paper's Figure 8 comparisons


def check(name: str) -> None:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")


def build_model(method: str, preset, init_std: float | None = None):
    """The model a method trains, untrained (also what `ali_dist.load` fills with weights)."""
    from ..models import ALI
    check(method)
    encoder, discriminator = MODEL_PARTS[method]
    return ALI(preset, encoder=encoder, discriminator=discriminator, init_std=init_std,
               name=method)


def build(cfg) -> Method:
    """The method a resolved config asks for, with its model."""
    m, o = cfg.model, cfg.optim
    model = build_model(m.method, m.preset, m.init_std)
    cls = METHODS[m.method]
    if cls is VAE:
        return VAE(model)
    game = dict(update=o.update, r1=o.r1, r1_every=o.r1_every, d_steps=o.d_steps)
    if cls is PostHocInference:
        return PostHocInference(model, init_std=model.preset.init_std if m.init_std is None
                                else m.init_std, **game)
    return cls(model, **game)


__all__ = ["METHODS", "BASELINES", "Batch", "Method", "Phase", "Stage", "build", "build_model",
           "check"]
