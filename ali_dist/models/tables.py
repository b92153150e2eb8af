"""The architecture tables as data: the paper's appendix A (Tables 3-6) as its authors' released
code trained them (IshmaelBelghazi/ALI, `experiments/ali_*.py`).

The PDF's tables lost their "BN?" column, and where the PDF and that code disagree the code is
what was trained, so the code is followed (README, "The presets against the authors' code",
lists every difference). What the code does that the tables cannot show:
  - batch norm after every hidden layer of Gz(x) and Gx(z), and after every convolution of D(x)
    but the first (SVHN, CelebA, Tiny ImageNet; CIFAR-10's maxout D(x) has none); never in D(z)
    or D(x, z). Running statistics move as 0.05 * batch + 0.95 * running (`Preset.bn_momentum`).
  - biases only where no batch norm follows, and not at all in D(z) (SVHN, CelebA, CIFAR-10);
    the decoder's output layer has a per-pixel bias started at the data's log-odds.
  - dropout on the inputs of D's layers: 0.2 everywhere (SVHN, CelebA, Tiny ImageNet: the PDF's
    CelebA D(x) says 0.0); CIFAR-10 0.2 on the first layers of D(x) and D(z), 0.5 elsewhere, in
    the code's exact places (one of them between a convolution and its maxout).
  - a maxout row's feature maps are its convolution's outputs: 2 pieces halve them (CIFAR-10).

`Layer` rows read top to bottom as the tables print them. `Layer.dropout` is on the layer's input;
`Layer.act_dropout` between its output and its non-linearity. The tables' final "Sigmoid"
discriminator row emits the logit here: the losses apply the sigmoid inside `softplus`.

Widths that depend on other facts are symbolic instead of copied:
  Z2     the encoder's output, 2 x z_dim (mu and log sigma for the reparametrisation), or
         z_dim (z itself) for an encoder with input noise (`Preset.encoder_noise`); in HALI
         the output of q(z2 | z1), z2 being the top latent
  Z1     HALI only: 2 x z1's channels, the output of q(z1 | x) and of p(z1 | z2)
  IMG    the decoder's output, the image's channel count
  LOGIT  the discriminator's single output
The input width of D(x, z) is never written down: it is computed from the D(x) and D(z)
branches (the printed concatenation widths disagree with the branches in Tables 3 and 5).

128 px presets are not in the paper. They are the 64 px tables with one extra unpadded
stride-2 stage: a 2x2/2 convolution first in Gz(x) and D(x) (128 -> 64), and a 2x2/2 transposed
convolution last in Gx(z) before its 1x1 output layer (64 -> 128). The 64 px trunk then runs
unchanged, so every paper layer keeps its receptive field relative to a 64 px image; D(x)'s
batch-norm rule (none after the first convolution only) applies to the new first layer.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

Z2, Z1, IMG, LOGIT = "z2", "z1", "img", "logit"
CONDITIONS = ("class", "attributes")   # what a conditional model's y is (Preset.condition)


@dataclass(frozen=True)
class Layer:
    op: str                  # "conv", "convT" (transposed conv) or "linear"
    kernel: int = 1
    stride: int = 1
    out: int | str = 0       # the layer's outputs (a maxout then keeps out / pieces), or a symbol
    bn: bool = False         # batch norm between the layer and its non-linearity
    dropout: float = 0.0     # on the layer's input
    act: str = "lrelu"       # lrelu, relu, maxout, linear, sigmoid
    bias: bool | None = None     # None: a bias unless batch norm follows (its shift is one)
    act_dropout: float = 0.0     # between the layer's output and its non-linearity

    @property
    def has_bias(self) -> bool:
        return (not self.bn) if self.bias is None else self.bias


def conv(k, s, out, bn=False, dropout=0.0, act="lrelu", bias=None, act_dropout=0.0):
    return Layer("conv", k, s, out, bn, dropout, act, bias, act_dropout)


def convT(k, s, out, bn=True, act="lrelu"):
    return Layer("convT", k, s, out, bn, 0.0, act)


def linear(out, bn=False, dropout=0.0, act="relu", bias=None):
    return Layer("linear", 1, 1, out, bn, dropout, act, bias)


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
    slope: float = 0.01             # leaky ReLU slope (Blocks' default, the SVHN code's)
    maxout_pieces: int = 2
    bn_momentum: float = 0.05       # running stats: 0.05 * batch + 0.95 * running (the code's)
    bn_eps: float = 1e-4            # Blocks' batch-norm epsilon
    init_std: float = 0.01          # weights N(0, init_std), biases 0
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999            # the paper's "beta2 = 1e-3" is Blocks' 1 - beta2
    batch_size: int = 100           # per worker
    update: str = "simultaneous"    # the original code's; or "alternating"
    lr_decay: str = "none"          # the paper's constant rate; see ali_dist/schedule.py
    lr_hold: float = 0.0            # share of the run at the full rate before the decay
    lr_final: float = 0.01          # the rate at the end, as a share of lr
    r1: float = 0.0                 # R1 penalty weight on D (ours, not the paper's; see README)
    cycle: float = 0.0              # weight of an explicit reconstruction term in E/G's loss
                                    # (ALI's game only; ours, not the paper's; see README)
    cycle_until: float = 1.0        # ... for this share of the run (then the game alone)
    d_dropout: float | None = None  # ALI's game only: every D dropout at this rate (ours;
                                    # None: the table's; `with_d_dropout`)
    ali_z_dim: int | None = None    # ALI's game only: z's width instead of z_dim (ours)
    ali_lr: float | None = None     # ALI's game only: Adam's rate instead of lr (ours)
    encoder_noise: int = 0          # > 0: q(z|x) takes N(0, I) noise of this width beside x
                                    # and outputs z (`networks.Encoder`); 0: Gaussian q(z|x)
    d_steps: int = 1                # D updates per E/G update (alternating updates)
    d_pack: int = 1                 # D judges packs of this many pairs, one logit per pack
                                    # (PacGAN's packing; ours for ALI; `networks.Discriminator`)
    default_data: str = ""          # what `--data` means when not given
    steps: int = 0                  # default budget: steps (demos) ...
    epochs: float = 0               # ... or the paper's epochs
    demo_minutes: float = 0         # demos: a time limit on the default budget, so that the
                                    # no-argument run ends in minutes on a slow machine too
    probe_labels: int = 1000        # the L2-SVM probe's labels (the paper's SVHN protocol)
    condition: str = ""             # the data's fully observed y, for --conditional: "class"
                                    # (one-hot) or "attributes" (binary); "" none
    condition_dim: int = 0          # classes or attributes (the default; a build may override)
    hierarchy: "Hierarchy | None" = None   # HALI's second level; None: a flat ALI table

    @property
    def is_image(self) -> bool:
        return self.image_size > 0

    @property
    def is_hierarchical(self) -> bool:
        return self.hierarchy is not None

    @property
    def embed_dim(self) -> int:
        """Width of y's linear embedding in a conditional model: z's width, as the authors'
        conditional CelebA code (256 attributes embedding for z of 256)."""
        return self.z_dim


@dataclass(frozen=True)
class Hierarchy:
    """HALI's second level (Belghazi et al. 2018): the Markov chain x -> z1 -> z2 on both sides.
    With it, a preset's `encoder` is q(z1 | x) (ending in Z1), its `decoder` p(x | z1) and its
    `d_x` D(x) down to z1's resolution; `z_dim` is z2's width (the prior's)."""
    z1_channels: int                # z1 is a z1_channels x S x S feature map (S: `z1_size`)
    encoder: tuple[Layer, ...]      # q(z2 | z1), ending in Z2
    decoder: tuple[Layer, ...]      # p(z1 | z2), ending in Z1
    d_xz1: tuple[Layer, ...]        # D on concat(D(x), z1) down to a vector; then it meets
                                    # D(z2) (`d_z`) in the joint layers (`d_xz`)


def ali_game(p: Preset, method: str) -> dict:
    """What the preset tunes for ALI's game alone (method ali; other methods train the table):
    the `build_model` arguments `d_dropout` and `z_dim`, and Adam's `lr` (None where the
    table's holds); the cycle term's weight (other methods train without: 0)."""
    ali = method == "ali"
    return {"d_dropout": p.d_dropout if ali else None, "z_dim": p.ali_z_dim if ali else None,
            "lr": p.ali_lr if ali else None, "cycle": p.cycle if ali else 0.0}


def with_d_dropout(p: Preset, rate: float) -> Preset:
    """The preset with dropout at `rate` on every discriminator layer's input (and between a
    layer and its non-linearity where the table puts one there); 0 removes them all."""
    at = lambda rows: tuple(replace(r, dropout=rate, act_dropout=rate if r.act_dropout else 0.0)
                            for r in rows)
    h = p.hierarchy and replace(p.hierarchy, d_xz1=at(p.hierarchy.d_xz1))
    return replace(p, d_x=at(p.d_x), d_z=at(p.d_z), d_xz=at(p.d_xz), hierarchy=h)


def spatial_size(layers: tuple[Layer, ...], size: int) -> int:
    """The side of a square input after a table's rows (unpadded convolutions): convolutions
    (size - k) // s + 1, transposed ones (size - 1) * s + k."""
    for r in layers:
        if r.op == "conv":
            size = (size - r.kernel) // r.stride + 1
        elif r.op == "convT":
            size = (size - 1) * r.stride + r.kernel
    return size


def z1_size(p: Preset) -> int:
    """The side of HALI's z1: where q(z1 | x) leaves the image (p(z1 | z2) must agree)."""
    return spatial_size(p.encoder, p.image_size)


def _d_x_bn(rows: tuple[Layer, ...]) -> tuple[Layer, ...]:
    """The authors' D(x): batch norm after every convolution but the first."""
    return rows[:1] + tuple(replace(r, bn=True) for r in rows[1:])


def _generator_32px(w):
    """Gz(x) and Gx(z) of Tables 3 and 4 (one 32 px geometry: 32 -> 1 x 1 and back)."""
    enc = (conv(5, 1, w(32), bn=True), conv(4, 2, w(64), bn=True), conv(4, 1, w(128), bn=True),
           conv(4, 2, w(256), bn=True), conv(4, 1, w(512), bn=True), conv(1, 1, w(512), bn=True),
           conv(1, 1, Z2, act="linear"))
    dec = (convT(4, 1, w(256)), convT(4, 2, w(128)), convT(4, 1, w(64)), convT(4, 2, w(32)),
           convT(5, 1, w(32)), conv(1, 1, w(32), bn=True), conv(1, 1, IMG, act="sigmoid"))
    return dict(encoder=enc, decoder=dec)


def _svhn_table(width: float = 1.0):
    """Table 4 as `ali_svhn.py` trains it: leaky-ReLU D, dropout 0.2 on every D input."""
    w = lambda c: max(1, int(round(c * width)))
    return dict(
        **_generator_32px(w),
        d_x=_d_x_bn((conv(5, 1, w(32), dropout=0.2), conv(4, 2, w(64), dropout=0.2),
                     conv(4, 1, w(128), dropout=0.2), conv(4, 2, w(256), dropout=0.2),
                     conv(4, 1, w(512), dropout=0.2))),
        d_z=(conv(1, 1, w(512), dropout=0.2, bias=False),
             conv(1, 1, w(512), dropout=0.2, bias=False)),
        d_xz=(conv(1, 1, w(1024), dropout=0.2), conv(1, 1, w(1024), dropout=0.2),
              conv(1, 1, LOGIT, dropout=0.2, act="linear")))


def _cifar10_table():
    """Table 3 as `ali_cifar10.py` trains it: maxout D (2 pieces halve each layer's maps), no
    batch norm in D, dropout 0.2/0.5 where the code puts it: on the inputs of D(x)'s 1st, 2nd
    and 5th convolutions, between the 3rd and its maxout, none before the 4th."""
    mx = dict(act="maxout")
    return dict(
        **_generator_32px(lambda c: c),
        d_x=(conv(5, 1, 32, dropout=0.2, **mx), conv(4, 2, 64, dropout=0.5, **mx),
             conv(4, 1, 128, act_dropout=0.5, **mx), conv(4, 2, 256, **mx),
             conv(4, 1, 512, dropout=0.5, **mx)),
        d_z=(conv(1, 1, 512, dropout=0.2, bias=False, **mx),
             conv(1, 1, 512, dropout=0.5, bias=False, **mx)),
        d_xz=(conv(1, 1, 1024, dropout=0.5, **mx), conv(1, 1, 1024, dropout=0.5, **mx),
              conv(1, 1, LOGIT, dropout=0.5, act="linear")))


CIFAR10 = Preset("cifar10", z_dim=64, image_size=32, slope=0.1, maxout_pieces=2,
                 epochs=6475, condition="class", condition_dim=10, **_cifar10_table())                            # Table 3

SVHN = Preset("svhn", z_dim=256, image_size=32, slope=0.01, epochs=100,
              condition="class", condition_dim=10, **_svhn_table())                                               # Table 4

# The embedded demo: scikit-learn's handwritten digits upsampled to 32 px, one channel. The
# SVHN table (digits too) at a quarter of its widths, with every rule of the authors' code,
# so a CPU trains it in minutes. Its own training settings, measured on 2 CPU cores (README,
# "The digits preset"): on 1,437 images the batch-normed D wins outright within a hundred steps
# at any lr, so an R1 penalty (x-gradient only) holds it back; init std 0.05, because at the
# paper's 0.01 the un-normalised D(z) branch starts ~100x quieter than D(x) and the encoder,
# which learns only through D's view of z, barely moves in a CPU budget. Batch 32 at lr 5e-4:
# 1,500 steps trained in about 2 minutes on 2 cores (batch 64 at 2e-4 took 3.6).
# The explicit cycle term (cycle 10: 10 x the MSE of G(E(x)) against x in E/G's loss) makes the
# demo's reconstructions faithful: at 1,500 steps plain ALI's keep their input's class 23 % of
# the time, with the term 92-94 % (real digits: 98 %; README, "The digits preset"). It costs
# about a quarter more per step, so the demo trains 1,200 steps (92 % at two seeds), under 3
# minutes of training on 2 cores.
# ALI's game trains without the table's dropout in D (d_dropout 0; method ali only, as the
# cycle term): at 1,200 steps a pixel classifier is sure of 41, 40 and 35 % of the samples at
# seeds 0-2 against 27, 36 and 25 % with it (real digits 77 %); conditional samples are their
# class 95.8 % against 92.8 % (README, "The digits preset"). On 1,437 images the R1 penalty,
# not dropout, is what keeps D in the game. K+1 keeps the dropout: without it its test error
# fell (3.9 % against 6.7 %) but its encoder learned no inference in 600 steps
# (reconstructions 1.10 of the random pair); hali-digits keeps it too (below). The step is
# cheaper without it, so the demo trains 1,600 steps in ~170 s on 2 cores (1,200 with
# dropout took ~150): reconstructions keep their class 90 % against 85 % at 1,200 steps,
# samples sure 45 % against 44 %.
# ALI's game also takes z of 8 dimensions, not 32 (ali_z_dim; method ali only, as the cycle
# term): at 1,600 steps, seeds 0-2, the samples a pixel classifier is sure of 53, 52 and 49 %
# against 52, 39 and 38 % with 32, and reconstructions keep their class 95, 94 and 95 %
# against 91, 94 and 88 % (README, "The digits preset"). With 1,437 images in 32 dimensions
# a prior draw lies far from every encoded image (median 5.3 against 1.7 between neighbouring
# codes), where the decoder blends digits; 8 dimensions leave it fewer such gaps.
# And ALI's game takes lr 1e-3, twice the preset's (ali_lr; method ali only): at 1,600 steps the
# samples the classifier is sure of rose at every seed (README, "The digits preset"); the
# other methods keep 5e-4, with which their figures were measured.
DIGITS = Preset("digits", z_dim=32, image_size=32, channels=1, slope=0.01, lr=5e-4,
                init_std=0.05, r1=1.0, cycle=10.0, batch_size=32, default_data="digits",
                steps=1600, d_dropout=0.0, ali_z_dim=8, ali_lr=1e-3,
                probe_labels=100,
                condition="class", condition_dim=10, **_svhn_table(0.25))

_CELEBA_ENC = (conv(2, 1, 64, bn=True), conv(7, 2, 128, bn=True), conv(5, 2, 256, bn=True),
               conv(7, 2, 256, bn=True), conv(4, 1, 512, bn=True), conv(1, 1, Z2, act="linear"))
_CELEBA_DEC = (convT(4, 1, 512), convT(7, 2, 256), convT(5, 2, 256), convT(7, 2, 128),
               convT(2, 1, 64), conv(1, 1, IMG, act="sigmoid"))
CELEBA64 = Preset(                                                               # Table 5
    "celeba64", z_dim=256, image_size=64, slope=0.02, epochs=123,
    condition="attributes", condition_dim=40,
    encoder=_CELEBA_ENC, decoder=_CELEBA_DEC,
    d_x=_d_x_bn((conv(2, 1, 64, dropout=0.2), conv(7, 2, 128, dropout=0.2),
                 conv(5, 2, 256, dropout=0.2), conv(7, 2, 256, dropout=0.2),
                 conv(4, 1, 512, dropout=0.2))),
    d_z=(conv(1, 1, 1024, dropout=0.2, bias=False), conv(1, 1, 1024, dropout=0.2, bias=False)),
    d_xz=(conv(1, 1, 2048, dropout=0.2), conv(1, 1, 2048, dropout=0.2),
          conv(1, 1, LOGIT, dropout=0.2, act="linear")))

TINYIMAGENET64 = Preset(                                                         # Table 6
    "tinyimagenet64", z_dim=256, image_size=64, slope=0.01, batch_size=128, epochs=1000,
    condition="class", condition_dim=200,
    encoder=(conv(4, 2, 64, bn=True), conv(4, 1, 64, bn=True), conv(4, 2, 128, bn=True),
             conv(4, 1, 128, bn=True), conv(4, 2, 256, bn=True), conv(4, 1, 256, bn=True),
             conv(1, 1, 2048, bn=True), conv(1, 1, 2048, bn=True), conv(1, 1, Z2, act="linear")),
    decoder=(conv(1, 1, 2048, bn=True), conv(1, 1, 256, bn=True), convT(4, 1, 256),
             convT(4, 2, 128), convT(4, 1, 128), convT(4, 2, 64), convT(4, 1, 64),
             convT(4, 2, 64), conv(1, 1, IMG, act="sigmoid")),
    d_x=_d_x_bn((conv(4, 2, 64, dropout=0.2), conv(4, 1, 64, dropout=0.2),
                 conv(4, 2, 128, dropout=0.2), conv(4, 1, 128, dropout=0.2),
                 conv(4, 2, 256, dropout=0.2), conv(4, 1, 256, dropout=0.2))),
    d_z=(conv(1, 1, 2048, dropout=0.2), conv(1, 1, 2048, dropout=0.2)),   # with biases here
    d_xz=(conv(1, 1, 4096, dropout=0.2), conv(1, 1, 4096, dropout=0.2),
          conv(1, 1, LOGIT, dropout=0.2, act="linear")))


def _at_128px(p: Preset, name: str) -> Preset:
    """A 64 px table with one extra stride-2 stage on each side (see the module docstring)."""
    first_dx = p.d_x[0]
    return replace(
        p, name=name, image_size=128,
        encoder=(conv(2, 2, 32, bn=True),) + p.encoder,
        decoder=p.decoder[:-1] + (convT(2, 2, 32),) + p.decoder[-1:],
        d_x=_d_x_bn((conv(2, 2, 32, dropout=first_dx.dropout, act=first_dx.act),) + p.d_x))


CELEBA128 = _at_128px(CELEBA64, "celeba128")
IMAGENET128 = replace(_at_128px(TINYIMAGENET64, "imagenet128"), condition_dim=1000)


def _hali(p: Preset, name: str, cut: tuple[int, int, int], z1_channels: int,
          z2_hidden: tuple[Layer, ...] = (), **changes) -> Preset:
    """HALI's tables: an ALI table cut where z1 goes (README, "HALI"). `cut` = (e, g, d):
      q(z1 | x)   rows [:e] of Gz(x), then a 1x1 output layer (mu, log sigma of z1)
      q(z2 | z1)  rows [e:] of Gz(x) (`z2_hidden` inserted before its output layer, so that
                  it has the three hidden layers the L2-SVM probe reads)
      p(z1 | z2)  rows [:g] of Gx(z), then a 1x1 output layer (mu, log sigma of z1)
      p(x | z1)   rows [g:] of Gx(z)
      D           D(x)'s rows [:d] on x; its rows [d:] on concat(D(x), z1), without batch norm
                  (none where a latent enters, as the authors' D(z) and D(x, z)); then D(z) on
                  z2 and the joint layers D(x, z) as in the ALI table, on concat(both)
    Every cut lands where Gz(x) and Gx(z) pass through the same resolution (checked by
    `z1_size` in the tests), so z1 has one shape on both sides."""
    e, g, d = cut
    out = conv(1, 1, Z1, act="linear")
    enc2 = p.encoder[e:-1] + z2_hidden + p.encoder[-1:]
    # what a flat ALI table tunes for its own game (cycle term, D dropout, z width, rate) stays
    return replace(p, name=name, encoder=p.encoder[:e] + (out,), decoder=p.decoder[g:], cycle=0.0,
                   d_dropout=None, ali_z_dim=None, ali_lr=None,
                   d_x=p.d_x[:d],
                   hierarchy=Hierarchy(z1_channels, encoder=enc2, decoder=p.decoder[:g] + (out,),
                                       d_xz1=tuple(replace(r, bn=False) for r in p.d_x[d:])),
                   **changes)


# HALI (not in the ALI paper; the HALI slides give no tables): the ALI tables cut at a
# mid-resolution z1. 32 px: z1 at 10 x 10 (after Gz(x)'s third row, Gx(z)'s second);
# CelebA: 13 x 13; Tiny ImageNet's table (for ImageNet 128): 10 x 10. z2 is the ALI z.
# hali-digits trains longer than ALI's digits and lowers its rate over the second half: z2's
# reconstructions swing around the random-pair baseline at a constant rate (0.85-1.2 between
# evaluations up to 5,000 steps) and settle below it as the rate falls (README, "HALI").
# It keeps the table's dropout in D, which ALI's digits game drops: without it, at 3,500
# steps, z2's L2-SVM features lost to raw pixels at seed 1 (15.5 % test error against 13.2 %;
# 11.7 % at seed 0), with it 12.2 % and 10.4 %.
HALI_DIGITS = _hali(DIGITS, "hali-digits", (3, 2, 3), z1_channels=4, steps=5000,
                    lr_decay="linear", lr_hold=0.5, lr_final=0.1)
HALI_SVHN = _hali(SVHN, "hali-svhn", (3, 2, 3), z1_channels=16)
HALI_CELEBA64 = _hali(CELEBA64, "hali-celeba64", (3, 2, 3), z1_channels=32,
                      z2_hidden=(conv(1, 1, 512, bn=True),))
HALI_CELEBA128 = _at_128px(HALI_CELEBA64, "hali-celeba128")
HALI_IMAGENET128 = replace(_at_128px(_hali(TINYIMAGENET64, "", (4, 4, 4), z1_channels=32),
                                     "hali-imagenet128"), condition_dim=1000)

# The toy study (paper section 4.5, as PacGAN re-ran it for ALI): 2-D data, 2-D z, MLPs of
# 400 units with batch norm and ReLU, the decoder with 4 hidden layers, the encoder with 2 and
# 2-D N(0, I) noise beside x at its input (the authors' change-of-variables encoder, which
# PacGAN's ALI uses: q(z|x) is implicit, so the 25 tight clusters can spread over the whole
# prior; a Gaussian encoder left most of it uncovered, README "The toy study"), a discriminator
# of 3 maxout layers of 200 units with 5 pieces on concat(x, z).
# The training recipe is the one `python -m tune.search --recipe` found (README): alternating
# updates, 2 D steps per E/G step, a rate held for 31 % of the run, then linear to 7.7 %; and
# the explicit cycle term at 10 (10 x the MSE of G(E(x)) against x in E/G's loss, method ali
# only) while the rate is held, the game alone after it. Without the term coverage depended
# on the seed (19-25 strict modes over six seeds at 30,000 steps); with it all the way the
# decoder pulls samples between neighbouring modes (25 modes at 79 % high quality); on for
# the hold only, the modes it brings stay while the game sharpens them: 25 strict modes,
# 95.1 % high quality, reverse KL 0.07 over 3 seeds at 30,000 steps (README, "The toy
# study"). `--cycle 0` trains the paper's game.
# PacGAN's settings are `--config jobs/toy_pacgan.yaml`; the paper's are random draws of lr,
# beta1 and init std (`python -m tune.search`, the toy study).
TOY = Preset(
    "toy", z_dim=2, data_dim=2, maxout_pieces=5, encoder_noise=2,
    encoder=(linear(400, bn=True), linear(400, bn=True), linear(Z2, act="linear")),
    decoder=tuple(linear(400, bn=True) for _ in range(4)) + (linear(IMG, act="linear"),),
    d_x=(), d_z=(),
    d_xz=(linear(1000, act="maxout"), linear(1000, act="maxout"), linear(1000, act="maxout"),
          linear(LOGIT, act="linear")),      # 200 units of 5 pieces each
    init_std=0.010, bn_momentum=0.042, bn_eps=1e-5, lr=2.8e-4, beta1=0.64, batch_size=200,
    update="alternating", d_steps=2, lr_decay="linear", lr_hold=0.31, lr_final=0.077,
    cycle=10.0, cycle_until=0.31,
    default_data="toy", steps=5000, demo_minutes=4.5)  # ~3 min of training on 2 cores

PRESETS: dict[str, Preset] = {p.name: p for p in (
    TOY, DIGITS, CIFAR10, SVHN, CELEBA64, TINYIMAGENET64, CELEBA128, IMAGENET128,
    HALI_DIGITS, HALI_SVHN, HALI_CELEBA64, HALI_CELEBA128, HALI_IMAGENET128)}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
