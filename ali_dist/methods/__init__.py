"""Training methods: one file each, all driven by the one step and loop (see `base.py`).

    ali          the paper's game: encoder, decoder, joint D(x, z)          (adversarial.py)
                 (on a HALI preset the same game on (x, z1, z2); conditional models play it
                 with the batch's y, paper eq. 7)
    gan          the same game without encoder, D(x)                          (adversarial.py)
    gan_inverse  a GAN, then an encoder fitted to invert its frozen decoder   (inverse.py)
    gan_posthoc  a GAN, then encoder + fresh joint D by the ALI game          (posthoc.py)
    vae          encoder and decoder by the evidence lower bound              (vae.py)
    kplus1       semi-supervised ALI: D(x, z) with K + 1 outputs, a labelled   (kplus1.py)
                 subset of the training data
    classifier   the K+1 discriminator trained on the labelled subset alone  (kplus1.py)

`MODEL_PARTS` says what the model each trains holds (what users load afterwards).
"""
from __future__ import annotations

from dataclasses import replace

from ..models import get_preset
from ..models.tables import with_d_dropout
from .adversarial import GAN, Adversarial
from .base import Batch, Method, Phase, Stage
from .inverse import InverseMapping
from .kplus1 import KPlus1, LabelsOnly, data_classes
from .posthoc import PostHocInference
from .vae import VAE

METHODS: dict[str, type[Method]] = {m.name: m for m in (
    Adversarial, GAN, InverseMapping, PostHocInference, VAE, KPlus1, LabelsOnly)}

# method -> (has an encoder, its discriminator: "joint", "x" or None)
MODEL_PARTS = {"ali": (True, "joint"), "gan": (False, "x"), "gan_inverse": (True, "x"),
               "gan_posthoc": (True, "joint"), "vae": (True, None),
               "kplus1": (True, "joint"), "classifier": (True, "joint")}

LABELLED = ("kplus1", "classifier")    # train on a labelled subset; D has K + 1 outputs

BASELINES = ("gan_inverse", "gan_posthoc", "vae")     # the paper's Figure 8 comparisons


def check(name: str) -> None:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")


CONDITIONAL_METHODS = ("ali", "gan")     # the game reads y; the baselines do not


def check_model(method: str, preset, conditional: bool = False) -> None:
    """Can `method` train `preset` (a name or a Preset), conditional or not? A clear error if
    not; the config checks it early, `build_model` again."""
    from ..models import get_preset
    check(method)
    p = get_preset(preset) if isinstance(preset, str) else preset
    if p.is_hierarchical and method != "ali":
        raise ValueError(f"preset {p.name!r} is hierarchical (HALI): it trains with method "
                         f"'ali' (the game on (x, z1, z2)); {method!r} has no HALI form")
    if conditional and method not in CONDITIONAL_METHODS:
        raise ValueError(f"--conditional trains methods {', '.join(CONDITIONAL_METHODS)}; "
                         f"{method!r} does not read y")


def encoder_noise(method: str, preset, width: int | None = None) -> int:
    """The encoder's input-noise width (`networks.Encoder`) a method trains `preset` with:
    `width`, else the preset's; always 0 for the VAE, whose bound needs q(z|x)'s density."""
    if width is None:
        return 0 if method == "vae" else preset.encoder_noise
    if width < 0:
        raise ValueError(f"--encoder-noise is a width of at least 0, got {width}")
    if width and (preset.is_image or preset.is_hierarchical):
        raise ValueError(f"--encoder-noise is for vector data (the toy); preset "
                         f"{preset.name!r} is a{' HALI' if preset.is_hierarchical else 'n image'}"
                         " table")
    if width and method == "vae":
        raise ValueError("--encoder-noise: the VAE needs a Gaussian q(z|x) (its bound reads "
                         "q's density); use --encoder-noise 0")
    return width


def d_pack(method: str, preset, pack: int | None = None, conditional: bool = False) -> int:
    """How many pairs D judges per logit (`networks.Discriminator`; PacGAN's packing) when
    `method` trains `preset`: `pack`, else the preset's. Packing needs a flat model's D with
    one logit per input and no y."""
    if pack is None:
        pack = preset.d_pack if MODEL_PARTS[method][1] and method not in LABELLED else 1
    if pack < 1:
        raise ValueError(f"--d-pack is a number of pairs of at least 1, got {pack}")
    if pack > 1 and (not MODEL_PARTS[method][1] or method in LABELLED
                     or preset.is_hierarchical or conditional):
        what = "HALI" if preset.is_hierarchical else "conditional" if conditional else method
        raise ValueError(f"--d-pack {pack}: packing is for a flat model's D with one logit "
                         f"and no y (methods ali, gan, gan_inverse, gan_posthoc; not {what})")
    return pack


def build_model(method: str, preset, init_std: float | None = None, conditional: bool = False,
                y_dim: int | None = None, classes: int | None = None,
                d_dropout: float | None = None, z_dim: int | None = None,
                encoder_noise_width: int | None = None, pack: int | None = None):
    """The model a method trains, untrained (also what `ali_dist.load` fills with weights):
    HALI for a hierarchical preset, else ALI with the method's parts. `conditional`: every
    network reads y, of `y_dim` classes or attributes (default: the preset's). `classes`: K,
    for the methods whose D has K + 1 outputs. `d_dropout`: D's dropout rate instead of the
    table's (it changes which layers D's rows hold, so a saved model is rebuilt with its own).
    `z_dim`: z's width instead of the preset's. `encoder_noise_width`: the encoder's input
    noise (`encoder_noise`). `pack`: pairs per D logit (`d_pack`)."""
    from ..models import ALI, HALI, get_preset
    p = get_preset(preset) if isinstance(preset, str) else preset
    if d_dropout is not None:
        p = with_d_dropout(p, d_dropout)
    if z_dim is not None:
        p = replace(p, z_dim=z_dim)
    p = replace(p, encoder_noise=encoder_noise(method, p, encoder_noise_width))
    check_model(method, p, conditional)
    p = replace(p, d_pack=d_pack(method, p, pack, conditional))
    if p.is_hierarchical:
        return HALI(p, init_std=init_std, conditional=conditional, y_dim=y_dim)
    if method in LABELLED:
        from ..models.kplus1 import KPlus1ALI
        if not classes:
            raise ValueError(f"method {method!r} needs the class count K (--classes)")
        return KPlus1ALI(p, classes, init_std=init_std, name=method)
    encoder, discriminator = MODEL_PARTS[method]
    return ALI(p, encoder=encoder, discriminator=discriminator, init_std=init_std,
               name=method, conditional=conditional, y_dim=y_dim)


def build(cfg) -> Method:
    """The method a resolved config asks for, with its model."""
    m, o = cfg.model, cfg.optim
    if m.method in LABELLED and not m.classes:
        m.classes = data_classes(cfg.data)   # kept in the config: checkpoints and load see K
    preset = get_preset(m.preset)
    if m.bn_momentum is not None and m.bn_momentum != preset.bn_momentum:
        preset = replace(preset, bn_momentum=m.bn_momentum)
    model = build_model(m.method, preset, m.init_std, m.conditional, m.y_dim, m.classes,
                        m.d_dropout, m.z_dim, m.encoder_noise, m.d_pack)
    cls = METHODS[m.method]
    if cls is VAE:
        return VAE(model)
    if cls is LabelsOnly:
        return LabelsOnly(model, cfg.data.labels, cfg.data.label_seed)
    game = dict(update=o.update, r1=o.r1, r1_every=o.r1_every, d_steps=o.d_steps)
    if o.cycle:
        game["cycle"], game["cycle_until"] = o.cycle, o.cycle_until
    if cls is KPlus1:
        return KPlus1(model, cfg.data.labels, cfg.data.label_seed, **game)
    if cls is PostHocInference:
        return PostHocInference(model, init_std=model.preset.init_std if m.init_std is None
                                else m.init_std, **game)
    return cls(model, **game)


__all__ = ["METHODS", "BASELINES", "CONDITIONAL_METHODS", "LABELLED", "Batch", "Method",
           "Phase", "Stage", "build", "build_model", "check", "check_model", "d_pack",
           "encoder_noise"]
