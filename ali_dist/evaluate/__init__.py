"""Evaluation during and after training: metrics for every preset, pictures for people."""
from __future__ import annotations

import torch

from .grids import (CELEBA_ATTRIBUTES, attribute_sequence_grid, class_conditional_grid,
                    hierarchical_reconstruction_grid, reconstruction_grid, to_uint8_grid,
                    toy_figure)
from .modes import mode_metrics

GRID_IMAGES = 100   # a 10 x 10 grid, as in the paper's figures


def _has_classes(loader) -> bool:
    from ..data.format import CLASS_EXT
    return getattr(loader, "train", None) is not None and loader.train.label == CLASS_EXT


def _probe(model, loader, cfg, init_std) -> dict:
    from .probe import probe_model
    if loader.split("test") is None and loader.split("val") is None:
        # Measuring on training images would flatter the features: say so and skip.
        print(f"[ali_dist] L2-SVM probe skipped: {loader.train.source} has no 'val' or 'test' "
              f"split to measure on (--probe-labels 0 silences this)", flush=True)
        return {}
    return probe_model(model, loader, cfg.probe_labels, cfg.probe_draws, init_std=init_std)


@torch.no_grad()
def reconstruction_error(model, x: torch.Tensor, y=None) -> dict[str, float]:
    """Mean squared error of x vs reconstruct(x), next to the error of x vs a random other
    x (the baseline a model that ignores its input would reach): ratio < 1 means inference
    carries information about the input. HALI: per level (`recon_mse_z1`, `recon_mse_z2`),
    `recon_mse` being z2's (the top latent, as ALI's z). `y`: a conditional model's."""
    perm = torch.roll(torch.arange(len(x)), 1)
    base = (x[perm].float() - x.float()).pow(2).mean().item()
    levels = (1, 2) if model.is_hierarchical else (None,)
    out = {"recon_mse_random_pair": base}
    for level in levels:
        kw = {} if level is None else {"level": level}
        err = (model.reconstruct(x, y, **kw).float() - x.float()).pow(2).mean().item()
        suffix = "" if level is None else f"_z{level}"
        out[f"recon_mse{suffix}"] = err
        out[f"recon_ratio{suffix}"] = err / max(base, 1e-12)
    if model.is_hierarchical:
        out["recon_mse"], out["recon_ratio"] = out["recon_mse_z2"], out["recon_ratio_z2"]
    return out


def _validation(loader, n: int, labelled: bool):
    """n held-out images, and their labels or attributes when `labelled` (else None)."""
    if not labelled:
        return loader.validation_batch(n), None
    split = "val" if loader.split("val") is not None else "train"
    return loader.labelled(split, n)


def _attribute_names(loader, n: int) -> list[str]:
    names = getattr(getattr(loader, "train", None), "attributes", None)
    return list(names) if names else list(CELEBA_ATTRIBUTES[:n])


@torch.no_grad()
def evaluate(model, loader, tracker, step: int, is_rank0: bool, final: bool,
             probe=None, init_std: float | None = None) -> dict:
    """Rank 0 evaluates (others return {}): metrics into the returned dict, pictures to the
    tracker (at the end of the run for the toy; at every evaluation for images, so a person
    can watch progress). `probe` (the config's `eval` section, at the end of a run): the
    L2-SVM probe on encoder features when the data has class labels (not for conditional
    models: their encoder reads the label the probe would predict), beside raw pixels and an
    untrained encoder drawn with `init_std` (the run's); and whether reconstructions keep
    their input's class (`faithful.py`).

    Image grids: samples; reconstructions (HALI: from z1 and from z2 side by side);
    conditional models: `conditional/` a row per class with a shared z per column (class
    labels), or the paper's Figure 7 sequence (attributes)."""
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
        x, y = _validation(loader, GRID_IMAGES, model.conditional)
        samples = model.sample(len(x) if model.conditional else GRID_IMAGES, generator=gen, y=y)
        tracker.image(to_uint8_grid(samples, 10), f"samples/step_{step:07d}.png")
        if model.conditional:
            grid = class_conditional_grid(model, gen) if model.preset.condition == "class" \
                else attribute_sequence_grid(model, _attribute_names(loader, model.y_dim), gen)
            tracker.image(grid, f"conditional/step_{step:07d}.png")
        if model.encoder is not None:
            out.update(reconstruction_error(model, x, y))
            half = x[:GRID_IMAGES // 2]
            yh = None if y is None else y[:GRID_IMAGES // 2]
            grid = hierarchical_reconstruction_grid(
                half, model.reconstruct(half, yh, level=1), model.reconstruct(half, yh, level=2)) \
                if model.is_hierarchical else reconstruction_grid(half, model.reconstruct(half, yh))
            tracker.image(grid, f"reconstructions/step_{step:07d}.png")
            if probe is not None and _has_classes(loader) and not model.conditional:
                from .faithful import class_agreement      # end of run: does x -> z -> x
                out.update(class_agreement(model, loader))  # keep the input's class?
                if probe.probe_labels:
                    out.update(_probe(model, loader, probe, init_std))
    model.train()
    return out
