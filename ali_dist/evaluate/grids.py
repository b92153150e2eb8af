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
                       level=None, y1=None) -> np.ndarray:
    """The paper's Figure 6: a row per pair, x1, then decode((1 - t) E(x1) + t E(x2)) for
    `steps` t from 0 to 1 (E the encoder's mean), then x2. `level`: HALI's z1 or z2. A
    conditional model encodes each image with its own y and decodes with x1's (`y1`, and the
    pair's second y is taken equal to it: a row stays in one class)."""
    from . import hooks
    z1, z2 = hooks.encode(model, x1, y1, level), hooks.encode(model, x2, y1, level)
    t = torch.linspace(0, 1, steps, device=z1.device).view(1, steps, *[1] * (z1.dim() - 1))
    z = (1 - t) * z1[:, None] + t * z2[:, None]
    ys = None if y1 is None else torch.repeat_interleave(y1, steps, dim=0)
    mid = hooks.decode(model, z.flatten(0, 1), ys, level).view(len(x1), steps, *x1.shape[1:])
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
            level=None, fill: float = 0.5, y=None) -> list[torch.Tensor]:
    """Fill the unknown pixels (mask 0) by iterating x <- reconstruct(x) with the known pixels
    put back after every pass (the HALI slides' inpainting); the unknown start at `fill`.
    Returns the image after each iteration."""
    from . import hooks
    mask = mask.to(x)
    current = x * mask + fill * (1 - mask)
    out = []
    for _ in range(iterations):
        rec = hooks.reconstruct(model, current, y, level).to(x)
        current = x * mask + rec * (1 - mask)
        out.append(current)
    return out


def inpainting_grid(model, x: torch.Tensor, level=None, share: float = 0.5,
                    snapshots: tuple[int, ...] = INPAINT_SNAPSHOTS, y=None) -> np.ndarray:
    """A row per image: the original, the input with its centre masked (grey), then the
    fill after each of `snapshots` encode/decode iterations."""
    mask = centre_mask(x.shape, share)
    steps = inpaint(model, x, mask, max(snapshots), level, y=y)
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


def side_by_side(*grids: np.ndarray, gap: int = 4) -> np.ndarray:
    """HxWx3 grids of equal height in one image, `gap` white columns between them."""
    h = grids[0].shape[0]
    sep = np.full((h, gap, 3), 255, np.uint8)
    parts = [grids[0]]
    for g in grids[1:]:
        parts += [sep, g]
    return np.concatenate(parts, axis=1)


def hierarchical_reconstruction_grid(x: torch.Tensor, rec_z1: torch.Tensor,
                                     rec_z2: torch.Tensor, columns: int = 10) -> np.ndarray:
    """HALI's reconstructions as the slides show them: from z1 (left) and from z2 (right),
    each in the paper's layout (odd columns inputs, even columns reconstructions)."""
    return side_by_side(reconstruction_grid(x, rec_z1, columns),
                        reconstruction_grid(x, rec_z2, columns))


@torch.no_grad()
def class_conditional_grid(model, generator: torch.Generator, columns: int = 10,
                           rows: int = 10) -> np.ndarray:
    """A row per class (the first `rows` classes), a column per z shared by every row: what
    changes down a column is the class alone."""
    k = min(rows, model.y_dim)
    z = model.prior(columns, generator=generator)
    y = torch.arange(k).repeat_interleave(columns)
    return to_uint8_grid(model.decode(z.repeat(k, 1), y), columns)


# CelebA's 40 attributes in list_attr_celeba.txt's order (the shards keep it; a manifest names
# them): the fallback when the data does not.
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes",
    "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young")

# The paper's Figure 7: rows hold sex and age fixed (all "attractive"); the columns (a)-(l)
# add, from the row's attributes alone, the sequence printed in its caption.
FIGURE7_ROWS = (("Male", "Attractive", "Young"), ("Male", "Attractive"),
                ("Attractive", "Young"), ("Attractive",))
FIGURE7_COLUMNS = (
    (), ("Black_Hair",), ("Brown_Hair",), ("Blond_Hair",), ("Black_Hair", "Wavy_Hair"),
    ("Blond_Hair", "Bangs"), ("Blond_Hair", "Receding_Hairline"), ("Blond_Hair", "Bald"),
    ("Black_Hair", "Smiling"), ("Black_Hair", "Smiling", "Mouth_Slightly_Open"),
    ("Black_Hair", "Smiling", "Mouth_Slightly_Open", "Eyeglasses"),
    ("Black_Hair", "Smiling", "Mouth_Slightly_Open", "Eyeglasses", "Wearing_Hat"))


def figure7_attributes(names) -> torch.Tensor:
    """(rows x columns, n_attributes) 0/1 vectors of Figure 7's sequence, rows first; every
    attribute neither the row nor the column names is 0. `names`: the data's attribute
    names, in its order."""
    index = {n: i for i, n in enumerate(names)}
    missing = {a for r in FIGURE7_ROWS for a in r} | {a for c in FIGURE7_COLUMNS for a in c}
    missing -= set(index)
    if missing:
        raise ValueError(f"the data's attributes lack {', '.join(sorted(missing))} (Figure 7 "
                         f"needs CelebA's)")
    y = torch.zeros(len(FIGURE7_ROWS) * len(FIGURE7_COLUMNS), len(names))
    for r, row in enumerate(FIGURE7_ROWS):
        for c, col in enumerate(FIGURE7_COLUMNS):
            for a in row + col:
                y[r * len(FIGURE7_COLUMNS) + c, index[a]] = 1
    return y


@torch.no_grad()
def attribute_sequence_grid(model, names, generator: torch.Generator) -> np.ndarray:
    """The paper's Figure 7: one fixed z decoded under every row's and column's attributes."""
    y = figure7_attributes(names)
    z = model.prior(1, generator=generator).repeat(len(y), 1)
    return to_uint8_grid(model.decode(z, y), len(FIGURE7_COLUMNS))
