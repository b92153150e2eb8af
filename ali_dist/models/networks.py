"""Layer tables -> PyTorch modules. Pure PyTorch: no I/O, nothing distributed."""
from __future__ import annotations

import torch
from torch import nn

from .tables import IMG, LOGIT, Z2, Layer, Preset


class Maxout(nn.Module):
    """Max over `pieces` groups of consecutive channels: (B, C*pieces, ...) -> (B, C, ...)."""

    def __init__(self, pieces: int):
        super().__init__()
        self.pieces = pieces

    def forward(self, x):
        b, c = x.shape[:2]
        return x.view(b, c // self.pieces, self.pieces, *x.shape[2:]).amax(dim=2)


class PixelBias(nn.Module):
    """A per-pixel output bias, so the decoder can start at the data's mean image
    (the original code sets it to the log-odds of the per-pixel mean; see `init_output_bias`)."""

    def __init__(self, channels: int, size: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels, size, size))

    def forward(self, x):
        return x + self.bias


def _width(out, preset: Preset, logits: int = 1) -> int:
    return {Z2: 2 * preset.z_dim, IMG: preset.channels if preset.is_image else preset.data_dim,
            LOGIT: logits}.get(out, out)


def _activation(name: str, preset: Preset) -> nn.Module | None:
    return {"lrelu": lambda: nn.LeakyReLU(preset.slope), "relu": nn.ReLU,
            "maxout": lambda: Maxout(preset.maxout_pieces), "sigmoid": nn.Sigmoid,
            "linear": lambda: None}[name]()


def build_stack(layers: tuple[Layer, ...], in_width: int, preset: Preset,
                pixel_bias: bool = False, logits: int = 1) -> tuple[nn.Sequential, int]:
    """One table -> nn.Sequential with one block per table row (so `net[i]` is row i);
    returns it with its output width. A row's block is
    [dropout] layer [batch norm] [pixel bias] [dropout] [non-linearity].
    `logits`: the width of a LOGIT row (a K+1 discriminator has K+1)."""
    rows: list[nn.Module] = []
    width = in_width
    for i, row in enumerate(layers):
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
    return nn.Sequential(*rows), width


class Encoder(nn.Module):
    """Gz(x): a stochastic encoder. The last layer gives mu and log sigma; z = mu + sigma * eps."""

    def __init__(self, preset: Preset, in_width: int | None = None):
        super().__init__()
        data_width = preset.channels if preset.is_image else preset.data_dim
        self.net, _ = build_stack(preset.encoder, in_width or data_width, preset)
        self.z_dim = preset.z_dim

    def moments(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma) of q(z|x): the last layer's two halves."""
        h = self.net(x).flatten(1)
        return h[:, :self.z_dim], h[:, self.z_dim:]

    def forward(self, x, sample: bool = True):
        mu, log_sigma = self.moments(x)
        if not sample:
            return mu
        return mu + log_sigma.exp() * torch.randn_like(mu)


class Decoder(nn.Module):
    """Gx(z): z (B, z_dim) -> x. Images end in a sigmoid (pixels in [0, 1])."""

    def __init__(self, preset: Preset, in_width: int | None = None):
        super().__init__()
        self.is_image = preset.is_image
        self.net, _ = build_stack(preset.decoder, in_width or preset.z_dim, preset,
                                  pixel_bias=preset.is_image)

    def forward(self, z):
        return self.net(z[:, :, None, None] if self.is_image else z)


class Discriminator(nn.Module):
    """D(x, z): D(x) and D(z) branches, concatenated on channels, then D(x, z) -> one logit.
    With `joint=False` (the GAN variant) there is no D(z) branch and D sees x only.
    `outputs` > 1: that many logits per pair, (B, outputs) (the K+1 classifier's)."""

    def __init__(self, preset: Preset, joint: bool = True, outputs: int = 1):
        super().__init__()
        self.outputs = outputs
        self.is_image = preset.is_image
        x_in = preset.channels if preset.is_image else preset.data_dim
        self.d_x, x_width = build_stack(preset.d_x, x_in, preset)
        self.d_z, z_width = build_stack(preset.d_z, preset.z_dim, preset) if joint else (None, 0)
        self.d_xz, _ = build_stack(preset.d_xz, x_width + z_width, preset, logits=outputs)

    def forward(self, x, z=None):
        h = self.d_x(x)
        if self.d_z is not None:
            hz = self.d_z(z[:, :, None, None] if self.is_image else z)
            h = torch.cat([h, hz], dim=1)
        out = self.d_xz(h).flatten(1)
        return out.flatten() if self.outputs == 1 else out


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
