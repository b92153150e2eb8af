"""Input pipelines. Every loader yields `(x, y)` batches on the worker's device, x in the
model's range ([0, 1] images NCHW, raw 2-D points for the toy), y a LongTensor of classes, a
uint8 tensor of binary attributes (one column per attribute), or None; and has:

    batches_per_epoch        batches each rank sees per epoch (the same on every rank)
    state_dict() / load_state_dict(d) / initial_state()   the data position, for resuming
    validation_batch(n)      n held-out x for evaluation (grids, reconstructions)
    skipped_samples          bad samples skipped so far (images, with --skip-bad-samples)

`toy.py` is the toy's; `images.py` chooses DALI (`dali.py`) or webdataset (`wds.py`) over the
shards `shards.py` resolves, with the per-sample rules both share in `samples.py`.
"""
from __future__ import annotations


def make_loader(cfg, rank: int, world: int, device):
    from ..models import get_preset  # here, so that `ali_dist.data.format` imports no torch
    preset = get_preset(cfg.model.preset)
    source = cfg.data.data or preset.default_data
    if not preset.is_image:
        if source not in ("toy", None, ""):
            raise ValueError(f"preset {preset.name!r} trains on the built-in 25-Gaussian set; "
                             f"--data {source!r} is not supported for it")
        from .toy import ToyLoader
        return ToyLoader.for_config(cfg, rank, world, device)
    if not source:
        raise ValueError(f"preset {preset.name!r} needs --data: a manifest.json, a shard "
                         f"directory or a shard pattern (see `python -m data_tools --help`)")
    from .images import make_image_loader
    return make_image_loader(cfg, source, rank, world, device)
