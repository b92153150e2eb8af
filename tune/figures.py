"""The paper's Figure 8 for a study: each model's best trial's panels (samples, q(z) vs p(z),
reconstructions of held-out points; `ali_dist.evaluate.grids.toy_figure`), one row per model.

The panels are the PNGs each trial logged at its final evaluation (`toy_panels.png`), so the
driver needs no model weights, only the child runs' artifacts.
"""
from __future__ import annotations

from pathlib import Path

PANELS = "toy_panels.png"   # the artifact name `ali_dist.evaluate.evaluate` logs for the toy


def figure8(panels: dict[str, Path]):
    """Stack each model's panel image in a row (their widths differ: a GAN has no encoder
    panels), labelled by model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    images = {m: mpimg.imread(p) for m, p in panels.items()}
    if not images:
        return None
    width = max(im.shape[1] for im in images.values())
    fig, axes = plt.subplots(len(images), 1, squeeze=False,
                             figsize=(width / 100, sum(im.shape[0] for im in images.values())
                                      / 100 + 0.4 * len(images)))
    for ax, (model, im) in zip(axes[:, 0], images.items()):
        ax.imshow(im)
        ax.set_xlim(0, width)
        ax.set_title(model, loc="left", fontsize=12, fontweight="bold")
        ax.axis("off")
    fig.tight_layout()
    return fig
