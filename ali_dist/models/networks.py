"""Layer tables -> PyTorch modules. Pure PyTorch: no I/O, nothing distributed.

Conditional models (paper section 4.4, eq. 7) read a fully observed y (`condition.py` makes it a
vector): every network holds its own linear embedding of y and concatenates it, tiled over
the positions of a feature map, to the input of one row: the encoder's output layer, the
decoder's first layer, the discriminator's joint layers (where the authors' conditional code
puts it; README, "Conditional ALI").
"""
from __future__ import annotations

import torch
from torch import nn

from .tables import IMG, LOGIT, Z1, Z2, Layer, Preset


class Maxout(nn.Module):
    """Max over `pieces` groups of consecutive channels: (B, C*pieces, ...) -> (B, C, ...).
    By `max(dim)`, whose backward routes the gradient through the argmax: `amax`'s backward
    compares every piece with the maximum and was the toy step's slowest kernel (toy step
    1.11x faster in fp32 on one core, benchmarks/toy_step.py); the values are the same."""

    def __init__(self, pieces: int):
        super().__init__()
        self.pieces = pieces

    def forward(self, x):
        b, c = x.shape[:2]
        return x.view(b, c // self.pieces, self.pieces, *x.shape[2:]).max(dim=2).values


class PixelBias(nn.Module):
    """A per-pixel output bias, so the decoder can start at the data's mean image
    (the original code sets it to the log-odds of the per-pixel mean; see `init_output_bias`)."""

    def __init__(self, channels: int, size: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels, size, size))

    def forward(self, x):
        return x + self.bias


def _width(out, preset: Preset, logits: int = 1) -> int:
    z1 = preset.hierarchy.z1_channels if preset.hierarchy else 0
    return {Z2: preset.z_dim if preset.encoder_noise else 2 * preset.z_dim, Z1: 2 * z1,
            IMG: preset.channels if preset.is_image else preset.data_dim,
            LOGIT: logits}.get(out, out)


def _activation(name: str, preset: Preset) -> nn.Module | None:
    return {"lrelu": lambda: nn.LeakyReLU(preset.slope), "relu": nn.ReLU,
            "maxout": lambda: Maxout(preset.maxout_pieces), "sigmoid": nn.Sigmoid,
            "linear": lambda: None}[name]()


class Stack(nn.Sequential):
    """A table's rows, one block each (`stack[i]` is row i). With `cond_at`, row `cond_at`
    also reads y's embedding (B, E), tiled over its input's positions."""

    def __init__(self, *rows, cond_at: int | None = None):
        super().__init__(*rows)      # a slice (`stack[a:b]`) is an unconditioned Stack
        self.cond_at = cond_at

    def forward(self, x, emb: torch.Tensor | None = None):
        for i, row in enumerate(self):
            if i == self.cond_at:
                x = concat_embedding(x, emb)
            x = row(x)
        return x


def concat_embedding(h: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
    """h (B, C[, H, W]) and y's embedding (B, E) -> (B, C + E[, H, W])."""
    if emb is None:
        raise ValueError("this network is conditional: it needs y")
    emb = emb.to(h.dtype)
    if h.dim() == 4:
        emb = emb[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])
    return torch.cat([h, emb], 1)


def build_stack(layers: tuple[Layer, ...], in_width: int, preset: Preset,
                pixel_bias: bool = False, cond_at: int | None = None,
                cond_width: int = 0, logits: int = 1) -> tuple[Stack, int]:
    """One table -> a `Stack` with one block per table row (so `net[i]` is row i); returns
    it with its output width. A row's block is
    [dropout] layer [batch norm] [pixel bias] [dropout] [non-linearity].
    `cond_at`: the row whose input also takes `cond_width` channels of y's embedding.
    `logits`: the width of a LOGIT row (a K+1 discriminator has K+1)."""
    rows: list[nn.Module] = []
    width = in_width
    for i, row in enumerate(layers):
        if i == cond_at:
            width += cond_width
        out = _width(row.out, preset, logits)
        mods: list[nn.Module] = []
        if row.dropout > 0:
            mods.append(nn.Dropout(row.dropout))
        last_image_layer = pixel_bias and i == len(layers) - 1
        bias = row.has_bias and not last_image_layer   # the pixel bias replaces it there
        if row.op == "conv":
            mods.append(nn.Conv2d(width, out, row.kernel, row.stride, bias=bias))
        elif row.op == "convT":
            mods.append(nn.ConvTranspose2d(width, out, row.kernel, row.stride, bias=bias))
        elif row.op == "linear":
            mods.append(nn.Linear(width, out, bias=bias))
        else:
            raise ValueError(f"unknown layer op {row.op!r}")
        if row.bn:
            bn = nn.BatchNorm2d if row.op != "linear" else nn.BatchNorm1d
            mods.append(bn(out, eps=preset.bn_eps, momentum=preset.bn_momentum))
        if last_image_layer:
            mods.append(PixelBias(out, preset.image_size))
        if row.act_dropout > 0:
            mods.append(nn.Dropout(row.act_dropout))
        act = _activation(row.act, preset)
        if act is not None:
            mods.append(act)
        rows.append(nn.Sequential(*mods))
        width = out // preset.maxout_pieces if row.act == "maxout" else out
    return Stack(*rows, cond_at=cond_at), width


class Conditioned(nn.Module):
    """A network that may read y: `embed` is its own linear embedding of y (None when the
    model is not conditional), trained with the network (README, "Conditional ALI")."""

    def _init_condition(self, preset: Preset, y_dim: int) -> int:
        self.embed = nn.Linear(y_dim, preset.embed_dim) if y_dim else None
        return preset.embed_dim if y_dim else 0

    def _embedding(self, y):
        if self.embed is None:
            return None
        if y is None:
            raise ValueError("this model is conditional: pass y (class labels or attributes)")
        return self.embed(y.to(self.embed.weight.dtype))


def _as_input(v: torch.Tensor, is_image: bool) -> torch.Tensor:
    """A latent as a network's input: vectors become 1x1 feature maps for image networks."""
    return v[:, :, None, None] if is_image and v.dim() == 2 else v


class GaussianConditional(Conditioned):
    """A stochastic network: its table's last layer gives mu and log sigma of a Gaussian over
    `latent` channels, z = mu + sigma * eps (the reparametrisation). The latent is a vector
    (B, latent) when `spatial` is False (the output is 1x1), else a feature map (B, latent,
    H, W). y, if any, joins the input of the last layer."""

    def __init__(self, layers: tuple[Layer, ...], in_width: int, latent: int, preset: Preset,
                 spatial: bool = False, y_dim: int = 0):
        super().__init__()
        e = self._init_condition(preset, y_dim)
        self.net, _ = build_stack(layers, in_width, preset,
                                  cond_at=len(layers) - 1 if e else None, cond_width=e)
        self.latent, self.spatial, self.is_image = latent, spatial, preset.is_image

    def moments(self, x, y=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma): the last layer's two halves."""
        h = self.net(_as_input(x, self.is_image), self._embedding(y))
        if not self.spatial:
            h = h.flatten(1)
        return h[:, :self.latent], h[:, self.latent:]

    def forward(self, x, y=None, sample: bool = True):
        mu, log_sigma = self.moments(x, y)
        if not sample:
            return mu
        return mu + log_sigma.exp() * torch.randn_like(mu)


class Encoder(GaussianConditional):
    """Gz(x): a stochastic encoder q(z | x[, y]) (HALI: q(z1 | x[, y])). Gaussian, or, with
    the preset's `encoder_noise` > 0 (vector data), a change-of-variables conditional:
    z = f(x, eps), eps ~ N(0, I) of that width joining x at the input. Its q(z|x) is implicit
    and may take any shape: on the toy, whose data are 25 clusters of sigma 0.05, it is what
    lets q(z) cover the whole prior (README, "The toy study"). It has no moments; its
    `sample=False` code is f(x, 0), at the noise's mean."""

    def __init__(self, preset: Preset, y_dim: int = 0):
        data_width = preset.channels if preset.is_image else preset.data_dim
        h = preset.hierarchy
        self.noise = preset.encoder_noise    # checked by `methods.encoder_noise`
        super().__init__(preset.encoder, data_width + self.noise,
                         h.z1_channels if h else preset.z_dim, preset, spatial=h is not None,
                         y_dim=y_dim)

    @property
    def z_dim(self) -> int:
        return self.latent

    def moments(self, x, y=None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.noise:
            raise TypeError("this encoder takes input noise (encoder_noise): its q(z|x) is "
                            "implicit and has no mean and sigma; call it for z")
        return super().moments(x, y)

    def forward(self, x, y=None, sample: bool = True):
        if not self.noise:
            return super().forward(x, y, sample)
        eps = x.new_empty(x.shape[0], self.noise)
        eps = eps.normal_() if sample else eps.zero_()
        return self.net(torch.cat([x, eps], 1), self._embedding(y))


class Decoder(Conditioned):
    """Gx(z): z (B, z_dim) -> x (HALI: p(x | z1), z1 a feature map). Images end in a sigmoid
    (pixels in [0, 1]). y, if any, joins the input of the first layer."""

    def __init__(self, preset: Preset, y_dim: int = 0):
        super().__init__()
        e = self._init_condition(preset, y_dim)
        h = preset.hierarchy
        self.is_image = preset.is_image
        self.net, _ = build_stack(preset.decoder, h.z1_channels if h else preset.z_dim, preset,
                                  pixel_bias=preset.is_image, cond_at=0 if e else None,
                                  cond_width=e)

    def forward(self, z, y=None):
        return self.net(_as_input(z, self.is_image), self._embedding(y))


class Discriminator(Conditioned):
    """D(x, z): D(x) and D(z) branches, concatenated on channels, then D(x, z) -> one logit.
    With `joint=False` (the GAN variant) there is no D(z) branch and D sees x only. y, if any,
    joins the input of D(x, z), beside both branches (the authors' conditional code).
    `outputs` > 1: that many logits per pair, (B, outputs) (the K+1 classifier's).
    The preset's `d_pack` m > 1 (PacGAN's packing): D(x, z) reads m consecutive pairs side by
    side on channels and gives one logit per pack, (B / m,); a pack that lacks diversity (m
    pairs from one mode) is what it learns to call fake, which is what pushes the other side
    to cover modes. Callers keep the m pairs of a pack on the same side."""

    def __init__(self, preset: Preset, joint: bool = True, y_dim: int = 0, outputs: int = 1):
        super().__init__()
        e = self._init_condition(preset, y_dim)
        self.outputs, self.pack = outputs, preset.d_pack    # checked by `methods.d_pack`
        self.is_image = preset.is_image
        x_in = preset.channels if preset.is_image else preset.data_dim
        self.d_x, x_width = build_stack(preset.d_x, x_in, preset)
        self.d_z, z_width = build_stack(preset.d_z, preset.z_dim, preset) if joint else (None, 0)
        self.d_xz, _ = build_stack(preset.d_xz, (x_width + z_width) * self.pack, preset,
                                   cond_at=0 if e else None, cond_width=e, logits=outputs)

    def forward(self, x, z=None, y=None):
        h = self.d_x(x)
        if self.d_z is not None:
            h = torch.cat([h, self.d_z(_as_input(z, self.is_image))], dim=1)
        if self.pack > 1:
            if h.shape[0] % self.pack:
                raise ValueError(f"D packs {self.pack} pairs per logit (--d-pack) but got "
                                 f"{h.shape[0]} pairs: the batch must be a multiple of it")
            h = h.reshape(h.shape[0] // self.pack, -1, *h.shape[2:])
        out = self.d_xz(h, self._embedding(y)).flatten(1)
        return out.flatten() if self.outputs == 1 else out


class HierarchicalEncoder(nn.Module):
    """HALI's inference side q(z1 | x) q(z2 | z1): two Gaussian conditionals in a chain."""

    def __init__(self, preset: Preset, y_dim: int = 0):
        super().__init__()
        h = preset.hierarchy
        self.q_z1 = Encoder(preset, y_dim)
        self.q_z2 = GaussianConditional(h.encoder, h.z1_channels, preset.z_dim, preset,
                                        y_dim=y_dim)

    def forward(self, x, y=None, sample: bool = True) -> list[torch.Tensor]:
        """[z1, z2]: z1 ~ q(z1 | x), z2 ~ q(z2 | z1) (the means, mu2 of mu1, without
        `sample`)."""
        z1 = self.q_z1(x, y, sample=sample)
        return [z1, self.q_z2(z1, y, sample=sample)]


class HierarchicalDecoder(nn.Module):
    """HALI's generative side p(z1 | z2) p(x | z1): a Gaussian conditional, then the decoder
    of x (whose pixel bias `init_output_bias` finds)."""

    def __init__(self, preset: Preset, y_dim: int = 0):
        super().__init__()
        h = preset.hierarchy
        self.p_z1 = GaussianConditional(h.decoder, preset.z_dim, h.z1_channels, preset,
                                        spatial=True, y_dim=y_dim)
        self.p_x = Decoder(preset, y_dim)

    def forward(self, z2, y=None, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, z1): z1 ~ p(z1 | z2) (its mean without `sample`), x = G(z1)."""
        z1 = self.p_z1(z2, y, sample=sample)
        return self.p_x(z1, y), z1


class HierarchicalDiscriminator(Conditioned):
    """HALI's D(x, z1, z2): D(x) down to z1's resolution; concatenated with z1 on channels,
    `d_xz1` takes both down to a vector; concatenated with D(z2) (`d_z`, 1x1 convolutions),
    the joint layers `d_xz` give one logit. y, if any, joins the joint layers' input."""

    def __init__(self, preset: Preset, y_dim: int = 0):
        super().__init__()
        e = self._init_condition(preset, y_dim)
        h = preset.hierarchy
        self.d_x, x_width = build_stack(preset.d_x, preset.channels, preset)
        self.d_xz1, xz1_width = build_stack(h.d_xz1, x_width + h.z1_channels, preset)
        self.d_z, z_width = build_stack(preset.d_z, preset.z_dim, preset)
        self.d_xz, _ = build_stack(preset.d_xz, xz1_width + z_width, preset,
                                   cond_at=0 if e else None, cond_width=e)

    def forward(self, x, z1, z2, y=None):
        h = self.d_xz1(torch.cat([self.d_x(x), z1], dim=1))
        h = torch.cat([h, self.d_z(_as_input(z2, True))], dim=1)
        return self.d_xz(h, self._embedding(y)).flatten()


def init_weights(module: nn.Module, std: float) -> None:
    """The paper's init: weights N(0, std), biases 0 (batch norm: scale 1, shift 0)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@torch.no_grad()
def init_output_bias(decoder: Decoder, mean_image: torch.Tensor, eps: float = 1e-3) -> None:
    """Start the decoder's output at the data's mean image: bias = logit(per-pixel mean)."""
    pb = [m for m in decoder.modules() if isinstance(m, PixelBias)]
    if pb:
        p = mean_image.clamp(eps, 1 - eps).to(pb[0].bias)
        pb[0].bias.copy_(torch.log(p) - torch.log1p(-p))


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def row_shapes(stack: nn.Sequential, x: torch.Tensor) -> list[tuple[int, ...]]:
    """The output shape (without batch) after every table row: for tests and inspection."""
    shapes = []
    for row in stack:
        x = row(x)
        shapes.append(tuple(x.shape[1:]))
    return shapes
