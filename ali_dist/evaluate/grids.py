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


def interpolation_grid(model, x1: torch.Tensor, x2: torch.Tensor, steps: int = 8) -> np.ndarray:
    """Rows: decode((1 - t) E(x1) + t E(x2)) for t in [0, 1], endpoints the real images."""
    z1, z2 = model.encode(x1), model.encode(x2)
    t = torch.linspace(0, 1, steps, device=z1.device)[None, :, None]
    z = (1 - t) * z1[:, None] + t * z2[:, None]
    mid = model.decode(z.flatten(0, 1)).view(len(x1), steps, *x1.shape[1:])
    rows = torch.cat([x1[:, None].to(mid), mid, x2[:, None].to(mid)], dim=1)
    return to_uint8_grid(rows.flatten(0, 1), steps + 2)


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
