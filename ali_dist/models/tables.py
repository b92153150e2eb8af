"""The paper's architecture tables (ALI, ICLR 2017, appendix A) as data.

Each network is a tuple of `Layer` rows read top to bottom, exactly as the tables print them.
`Layer.dropout` is applied to the layer's *input* (the original code's convention: "dropout 0.2
on inputs, 0.5 elsewhere"). The tables' final discriminator row says "Sigmoid": here it emits
the logit, and the losses apply the sigmoid inside `softplus` for numerical stability.

Widths that depend on other facts are symbolic instead of copied:
  Z2     the encoder's output, 2 x z_dim (mu and log sigma for the reparametrisation)
  IMG    the decoder's output, the image's channel count
  LOGIT  the discriminator's single output
The input width of D(x, z) is never written down: it is computed from the D(x) and D(z)
branches (the printed concatenation widths disagree with the branches in Table 5).

128 px presets are not in the paper. They are the 64 px tables with one extra unpadded
stride-2 stage: a 2x2/2 convolution first in Gz(x) and D(x) (128 -> 64), and a 2x2/2 transposed
convolution last in Gx(z) before its 1x1 output layer (64 -> 128). The 64 px trunk then runs
unchanged, so every paper layer keeps its receptive field relative to a 64 px image.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

Z2, IMG, LOGIT = "z2", "img", "logit"


@dataclass(frozen=True)
class Layer:
    op: str                  # "conv", "convT" (transposed conv) or "linear"
    kernel: int = 1
    stride: int = 1
    out: int | str = 0       # feature maps, or Z2 / IMG / LOGIT
    bn: bool = False
    dropout: float = 0.0     # on the layer's input
    act: str = "lrelu"       # lrelu, relu, maxout, linear, sigmoid


def conv(k, s, out, bn=False, dropout=0.0, act="lrelu"):
    return Layer("conv", k, s, out, bn, dropout, act)


def convT(k, s, out, bn=True, act="lrelu"):
    return Layer("convT", k, s, out, bn, 0.0, act)


def linear(out, bn=False, dropout=0.0, act="relu"):
    return Layer("linear", 1, 1, out, bn, dropout, act)


@dataclass(frozen=True)
class Preset:
    """One paper table plus the hyper-parameters printed under it."""
    name: str
    encoder: tuple[Layer, ...]
    decoder: tuple[Layer, ...]
    d_x: tuple[Layer, ...]          # D(x); empty for the toy (x goes straight to D(x, z))
    d_z: tuple[Layer, ...]          # D(z)
    d_xz: tuple[Layer, ...]         # D(x, z), on the channel concatenation of both branches
    z_dim: int
    image_size: int = 0             # 0: vector data (the toy)
    channels: int = 3
    data_dim: int = 0               # vector data only
    slope: float = 0.01             # leaky ReLU slope
    maxout_pieces: int = 2
    init_std: float = 0.01          # weights N(0, init_std), biases 0
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999            # the paper's "beta2 = 1e-3" is Blocks' 1 - beta2
    batch_size: int = 100           # per worker
    update: str = "simultaneous"    # the original code's; or "alternating"
    lr_decay: str = "none"          # the paper's constant rate; see ali_dist/schedule.py
    lr_hold: float = 0.0            # share of the run at the full rate before the decay
    lr_final: float = 0.01          # the rate at the end, as a share of lr
    default_data: str = ""          # what `--data` means when not given
    steps: int = 0                  # default budget: steps (demos) ...
    epochs: float = 0               # ... or the paper's epochs
    demo_minutes: float = 0         # demos: a time limit on the default budget, so that the
                                    # no-argument run ends in minutes on a slow machine too

    @property
    def is_image(self) -> bool:
        return self.image_size > 0


def _table_32px(d_act: str, d_in_dropout: float, d_dropout: float, width: float = 1.0):
    """Tables 3 (CIFAR-10) and 4 (SVHN) share one 32 px geometry: 32 -> 1 x 1 and back."""
    w = lambda c: max(1, int(round(c * width)))
    enc = (conv(5, 1, w(32), bn=True), conv(4, 2, w(64), bn=True), conv(4, 1, w(128), bn=True),
           conv(4, 2, w(256), bn=True), conv(4, 1, w(512), bn=True), conv(1, 1, w(512), bn=True),
           conv(1, 1, Z2, act="linear"))
    dec = (convT(4, 1, w(256)), convT(4, 2, w(128)), convT(4, 1, w(64)), convT(4, 2, w(32)),
           convT(5, 1, w(32)), conv(1, 1, w(32), bn=True), conv(1, 1, IMG, act="sigmoid"))
    d_x = (conv(5, 1, w(32), dropout=d_in_dropout, act=d_act),
           conv(4, 2, w(64), dropout=d_dropout, act=d_act),
           conv(4, 1, w(128), dropout=d_dropout, act=d_act),
           conv(4, 2, w(256), dropout=d_dropout, act=d_act),
           conv(4, 1, w(512), dropout=d_dropout, act=d_act))
    d_z = (conv(1, 1, w(512), dropout=d_in_dropout, act=d_act),
           conv(1, 1, w(512), dropout=d_dropout, act=d_act))
    d_xz = (conv(1, 1, w(1024), dropout=d_dropout, act=d_act),
            conv(1, 1, w(1024), dropout=d_dropout, act=d_act),
            conv(1, 1, LOGIT, dropout=d_dropout, act="linear"))
    return dict(encoder=enc, decoder=dec, d_x=d_x, d_z=d_z, d_xz=d_xz)


CIFAR10 = Preset("cifar10", z_dim=64, image_size=32, slope=0.1, maxout_pieces=2,
                 epochs=6475, **_table_32px("maxout", 0.2, 0.5))              # Table 3

SVHN = Preset("svhn", z_dim=256, image_size=32, slope=0.01, epochs=100,
              **_table_32px("lrelu", 0.2, 0.2))                              # Table 4

# The embedded demo: scikit-learn's handwritten digits upsampled to 32 px, one channel. The
# SVHN geometry (digits too) at a quarter of its widths, so a CPU trains it in minutes. With
# the paper's N(0, 0.01) init the un-normalised D starts dead (its output is 0.5 to four
# decimals) and needs hundreds of steps to wake; std 0.05 and lr 5e-4 give digit-like samples
# and reconstructions at half the random-pair error within 4,000 steps on CPU.
DIGITS = Preset("digits", z_dim=32, image_size=32, channels=1, slope=0.01, lr=5e-4,
                init_std=0.05, batch_size=64, default_data="digits", steps=4000, demo_minutes=7,
                **_table_32px("lrelu", 0.2, 0.2, 0.25))

_CELEBA_ENC = (conv(2, 1, 64, bn=True), conv(7, 2, 128, bn=True), conv(5, 2, 256, bn=True),
               conv(7, 2, 256, bn=True), conv(4, 1, 512, bn=True), conv(1, 1, Z2, act="linear"))
_CELEBA_DEC = (convT(4, 1, 512), convT(7, 2, 256), convT(5, 2, 256), convT(7, 2, 128),
               convT(2, 1, 64), conv(1, 1, IMG, act="sigmoid"))
_CELEBA_DX = (conv(2, 1, 64), conv(7, 2, 128), conv(5, 2, 256), conv(7, 2, 256), conv(4, 1, 512))
CELEBA64 = Preset(                                                               # Table 5
    "celeba64", z_dim=256, image_size=64, slope=0.02, epochs=123,
    encoder=_CELEBA_ENC, decoder=_CELEBA_DEC, d_x=_CELEBA_DX,
    d_z=(conv(1, 1, 1024, dropout=0.2), conv(1, 1, 1024, dropout=0.2)),
    d_xz=(conv(1, 1, 2048, dropout=0.2), conv(1, 1, 2048, dropout=0.2),
          conv(1, 1, LOGIT, dropout=0.2, act="linear")))

TINYIMAGENET64 = Preset(                                                         # Table 6
    "tinyimagenet64", z_dim=256, image_size=64, slope=0.01, batch_size=128, epochs=125,
    encoder=(conv(4, 2, 64, bn=True), conv(4, 1, 64, bn=True), conv(4, 2, 128, bn=True),
             conv(4, 1, 128, bn=True), conv(4, 2, 256, bn=True), conv(4, 1, 256, bn=True),
             conv(1, 1, 2048, bn=True), conv(1, 1, 2048, bn=True), conv(1, 1, Z2, act="linear")),
    decoder=(conv(1, 1, 2048, bn=True), conv(1, 1, 256, bn=True), convT(4, 1, 256),
             convT(4, 2, 128), convT(4, 1, 128), convT(4, 2, 64), convT(4, 1, 64),
             convT(4, 2, 64), conv(1, 1, IMG, act="sigmoid")),
    d_x=(conv(4, 2, 64, dropout=0.2), conv(4, 1, 64, dropout=0.2), conv(4, 2, 128, dropout=0.2),
         conv(4, 1, 128, dropout=0.2), conv(4, 2, 256, dropout=0.2), conv(4, 1, 256, dropout=0.2)),
    d_z=(conv(1, 1, 2048, dropout=0.2), conv(1, 1, 2048, dropout=0.2)),
    d_xz=(conv(1, 1, 4096, dropout=0.2), conv(1, 1, 4096, dropout=0.2),
          conv(1, 1, LOGIT, dropout=0.2, act="linear")))


def _at_128px(p: Preset, name: str) -> Preset:
    """A 64 px table with one extra stride-2 stage on each side (see the module docstring)."""
    first_dx = p.d_x[0]
    return replace(
        p, name=name, image_size=128,
        encoder=(conv(2, 2, 32, bn=True),) + p.encoder,
        decoder=p.decoder[:-1] + (convT(2, 2, 32),) + p.decoder[-1:],
        d_x=(conv(2, 2, 32, dropout=first_dx.dropout, act=first_dx.act),) + p.d_x)


CELEBA128 = _at_128px(CELEBA64, "celeba128")
IMAGENET128 = _at_128px(TINYIMAGENET64, "imagenet128")

# The toy study (paper section 4.5, in the PacGAN re-use of its setup): 2-D data, 2-D z,
# encoder and decoder MLPs of 400 units with batch norm and ReLU (4 hidden layers each), a
# discriminator of 3 maxout layers of 200 units with 5 pieces that sees concat(x, z).
# Training hyper-parameters were searched on 2 CPU cores for a run of minutes (see README);
# PacGAN's 400-epoch schedule (lr 1e-4, beta1 0.8) is `--lr 1e-4 --beta1 0.8`.
TOY = Preset(
    "toy", z_dim=2, data_dim=2, maxout_pieces=5, init_std=0.1,  # the study draws it at random
    encoder=tuple(linear(400, bn=True) for _ in range(4)) + (linear(Z2, act="linear"),),
    decoder=tuple(linear(400, bn=True) for _ in range(4)) + (linear(IMG, act="linear"),),
    d_x=(), d_z=(),
    d_xz=(linear(200, act="maxout"), linear(200, act="maxout"), linear(200, act="maxout"),
          linear(LOGIT, act="linear")),
    lr=1e-3, beta1=0.5, batch_size=100, default_data="toy", steps=3000, demo_minutes=3.5)

PRESETS: dict[str, Preset] = {p.name: p for p in (
    TOY, DIGITS, CIFAR10, SVHN, CELEBA64, TINYIMAGENET64, CELEBA128, IMAGENET128)}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
