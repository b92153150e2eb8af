"""Pictures of a model: image grids and the toy's scatter plots. Arrays and figures only; the
caller decides where they go."""
from __future__ import annotations

import numpy as np
import torch


def to_uint8_grid(images: torch.Tensor, columns: int) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> one HxWx3 uint8 array, `columns` images a row, 1 px gaps."""
    x = images.detach().float().clamp(0, 1).cpu()
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    n, c, h, w = x.shape
    rows = -(-n // columns)
    grid = torch.ones(c, rows * (h + 1) + 1, columns * (w + 1) + 1)
    for i in range(n):
        r, k = divmod(i, columns)
        grid[:, 1 + r * (h + 1):1 + r * (h + 1) + h, 1 + k * (w + 1):1 + k * (w + 1) + w] = x[i]
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def reconstruction_grid(x: torch.Tensor, x_rec: torch.Tensor, columns: int = 10) -> np.ndarray:
    """The paper's layout: odd columns inputs, even columns their reconstructions."""
    pairs = torch.stack([x, x_rec.to(x)], dim=1).flatten(0, 1)
    return to_uint8_grid(pairs, columns)


def interpolation_grid(model, x1: torch.Tensor, x2: torch.Tensor, steps: int = 8,
                       level=None) -> np.ndarray:
    """The paper's Figure 6: a row per pair, x1, then decode((1 - t) E(x1) + t E(x2)) for
    `steps` t from 0 to 1 (E the encoder's mean), then x2. `level`: HALI's z1 or z2."""
    from . import hooks
    z1, z2 = hooks.encode(model, x1, level=level), hooks.encode(model, x2, level=level)
    t = torch.linspace(0, 1, steps, device=z1.device).view(1, steps, *[1] * (z1.dim() - 1))
    z = (1 - t) * z1[:, None] + t * z2[:, None]
    mid = hooks.decode(model, z.flatten(0, 1), level=level).view(len(x1), steps, *x1.shape[1:])
    rows = torch.cat([x1[:, None].to(mid), mid, x2[:, None].to(mid)], dim=1)
    return to_uint8_grid(rows.flatten(0, 1), steps + 2)


INPAINT_SNAPSHOTS = (1, 2, 4, 8, 16)   # the iterations an inpainting row shows


def centre_mask(shape, share: float = 0.5) -> torch.Tensor:
    """1 where a pixel is known, 0 in the centre square of side `share` x the image side."""
    h, w = shape[-2:]
    mh, mw = round(h * share), round(w * share)
    mask = torch.ones(1, 1, h, w)
    mask[..., (h - mh) // 2:(h - mh) // 2 + mh, (w - mw) // 2:(w - mw) // 2 + mw] = 0
    return mask


@torch.no_grad()
def inpaint(model, x: torch.Tensor, mask: torch.Tensor, iterations: int = 16,
            level=None, fill: float = 0.5) -> list[torch.Tensor]:
    """Fill the unknown pixels (mask 0) by iterating x <- reconstruct(x) with the known pixels
    put back after every pass (the HALI slides' inpainting); the unknown start at `fill`.
    Returns the image after each iteration."""
    from . import hooks
    mask = mask.to(x)
    current = x * mask + fill * (1 - mask)
    out = []
    for _ in range(iterations):
        rec = hooks.reconstruct(model, current, level=level).to(x)
        current = x * mask + rec * (1 - mask)
        out.append(current)
    return out


def inpainting_grid(model, x: torch.Tensor, level=None, share: float = 0.5,
                    snapshots: tuple[int, ...] = INPAINT_SNAPSHOTS) -> np.ndarray:
    """A row per image: the original, the input with its centre masked (grey), then the
    fill after each of `snapshots` encode/decode iterations."""
    mask = centre_mask(x.shape, share)
    steps = inpaint(model, x, mask, max(snapshots), level)
    masked = x * mask.to(x) + 0.5 * (1 - mask.to(x))
    cols = [x, masked] + [steps[k - 1] for k in snapshots]
    return to_uint8_grid(torch.stack(cols, dim=1).flatten(0, 1), len(cols))


def toy_figure(model, held_out: torch.Tensor, title: str = ""):
    """The paper's Figure 8 panels for one model: samples vs data, q(z) vs p(z), and
    reconstructions of held-out points, colour-coded by mixture component."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..data import toy

    gen = torch.Generator().manual_seed(0)
    n = min(len(held_out), 2500)
    x = held_out[:n]
    comp = torch.cdist(x.cpu().double(), toy.means().double()).argmin(1).numpy()
    x_s = model.sample(n, generator=gen).cpu()
    z_p = torch.randn(n, model.z_dim, generator=gen)
    panels = 2 if model.encoder is None else 4
    fig, ax = plt.subplots(1, panels, figsize=(4 * panels, 4), squeeze=False)
    ax = ax[0]
    xc = x.cpu()
    ax[0].scatter(xc[:, 0], xc[:, 1], s=2, c=comp, cmap="tab20")
    ax[0].set_title("data x ~ q(x)")
    ax[1].scatter(x_s[:, 0], x_s[:, 1], s=2, c="k")
    ax[1].set_title("samples x ~ p(x)")
    if model.encoder is not None:
        z_q = model.encode(x).cpu()
        ax[2].scatter(z_p[:, 0], z_p[:, 1], s=2, c="0.8", label="p(z)")
        ax[2].scatter(z_q[:, 0], z_q[:, 1], s=2, c=comp, cmap="tab20", label="q(z)")
        ax[2].set_title("q(z) (coloured) vs p(z) (grey)")
        x_r = model.reconstruct(x).cpu()
        ax[3].scatter(x_r[:, 0], x_r[:, 1], s=2, c=comp, cmap="tab20")
        ax[3].set_title("reconstructions of held-out x")
    for a in ax[:2] if model.encoder is None else [ax[0], ax[1], ax[3]]:
        a.set_xlim(-6, 6)
        a.set_ylim(-6, 6)
    for a in ax:
        a.set_aspect("equal")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
