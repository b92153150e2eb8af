"""Evaluation during and after training: metrics for every preset, pictures for people."""
from __future__ import annotations

import torch

from .grids import reconstruction_grid, to_uint8_grid, toy_figure
from .modes import mode_metrics

GRID_IMAGES = 100   # a 10 x 10 grid, as in the paper's figures


def _has_classes(loader) -> bool:
    from ..data.format import CLASS_EXT
    return getattr(loader, "train", None) is not None and loader.train.label == CLASS_EXT


def _probe(model, loader, cfg) -> dict:
    from .probe import probe_model
    if loader.split("test") is None and loader.split("val") is None:
        # Measuring on training images would flatter the features: say so and skip.
        print(f"[ali_dist] L2-SVM probe skipped: {loader.train.source} has no 'val' or 'test' "
              f"split to measure on (--probe-labels 0 silences this)", flush=True)
        return {}
    return probe_model(model, loader, cfg.probe_labels, cfg.probe_draws)


@torch.no_grad()
def reconstruction_error(model, x: torch.Tensor) -> dict[str, float]:
    """Mean squared error of x vs reconstruct(x), next to the error of x vs a random other
    x (the baseline a model that ignores its input would reach): ratio < 1 means inference
    carries information about the input."""
    rec = model.reconstruct(x)
    err = (rec.float() - x.float()).pow(2).mean().item()
    perm = torch.roll(torch.arange(len(x)), 1)
    base = (x[perm].float() - x.float()).pow(2).mean().item()
    return {"recon_mse": err, "recon_mse_random_pair": base, "recon_ratio": err / max(base, 1e-12)}


@torch.no_grad()
def evaluate(model, loader, tracker, step: int, is_rank0: bool, final: bool,
             probe=None) -> dict:
    """Rank 0 evaluates (others return {}): metrics into the returned dict, pictures to the
    tracker (at the end of the run for the toy; at every evaluation for images, so a person
    can watch progress). `probe` (the config's `eval` section, at the end of a run): the
    L2-SVM probe on encoder features when the data has class labels."""
    if not is_rank0:
        return {}
    model.eval()
    gen = torch.Generator().manual_seed(1234)  # the same z at every evaluation
    out: dict = {}
    if not model.preset.is_image:
        dev = next(model.parameters()).device
        out.update(mode_metrics(model.decode, gen, model.z_dim, dev))
        if model.encoder is not None:
            out.update(reconstruction_error(model, loader.validation_batch(2500)))
        if final:
            fig = toy_figure(model, loader.validation_batch(2500),
                             f"{model.name.upper()} at step {step}: {out['modes_strict']}/25 "
                             f"modes, {100 * out['high_quality']:.1f}% high quality")
            tracker.figure(fig, "toy_panels.png")
            import matplotlib.pyplot as plt
            plt.close(fig)
    else:
        x = loader.validation_batch(GRID_IMAGES)
        samples = model.sample(GRID_IMAGES, generator=gen)
        tracker.image(to_uint8_grid(samples, 10), f"samples/step_{step:07d}.png")
        if model.encoder is not None:
            out.update(reconstruction_error(model, x))
            half = x[:GRID_IMAGES // 2]
            tracker.image(reconstruction_grid(half, model.reconstruct(half)),
                          f"reconstructions/step_{step:07d}.png")
            if probe is not None and probe.probe_labels and _has_classes(loader):
                out.update(_probe(model, loader, probe))
    model.train()
    return out
