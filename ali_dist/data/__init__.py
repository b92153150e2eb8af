"""Input pipelines. Every loader yields `(x, y)` batches on the worker's device, x in the
model's range ([0, 1] images NCHW, raw 2-D points for the toy), y a LongTensor of classes, a
uint8 tensor of binary attributes (one column per attribute), or None; and has:

    batches_per_epoch        batches each rank sees per epoch (the same on every rank)
    state_dict() / load_state_dict(d) / initial_state()   the data position, for resuming
    validation_batch(n)      n held-out x for evaluation (grids, reconstructions)
    skipped_samples          bad samples skipped so far (images, with --skip-bad-samples)

`toy.py` is the toy's; `images.py` holds what the DALI (`dali.py`) and webdataset (`wds.py`)
pipelines share over the shards `shards.py` resolves, with the per-sample rules both use in
`samples.py`; `make_loader` below picks one. `cache.py` (`--cache-on-device`) decodes the
training split once through either and serves it from device memory.
"""
from __future__ import annotations


def make_loader(cfg, rank: int, world: int, device):
    """The loader a resolved config asks for: the toy's in-memory set, or image shards through
    the pipeline `--loader` names (`dali`, `webdataset`, or `auto`: DALI where it imports and
    the data is local). The geometry comes from the config (`resolve` fills it from the
    preset): the data layer knows no model."""
    d = cfg.data
    if not d.image_size:
        if d.data not in ("toy", None, ""):
            raise ValueError(f"preset {cfg.model.preset!r} trains on the built-in 25-Gaussian "
                             f"set; --data {d.data!r} is not supported for it")
        from .toy import ToyLoader
        return ToyLoader.for_config(cfg, rank, world, device)
    if not d.data:
        raise ValueError(f"preset {cfg.model.preset!r} needs --data: a manifest.json, a shard "
                         f"directory or a shard pattern (see `python -m data_tools --help`)")
    from .images import dali_available
    from .shards import TRAIN, DataError, resolve, validation_set
    train = resolve(d.data, TRAIN)
    val = validation_set(train, d.val_data)
    local = train.local and (val is None or val.local)
    choice = d.loader
    if choice == "auto":
        choice = "dali" if local and dali_available() else "webdataset"
    elif choice == "dali" and not local:
        raise DataError(f"{d.data}: DALI reads local shards only; use --loader webdataset for "
                        f"URLs")
    elif choice == "dali" and not dali_available():
        raise DataError("--loader dali: nvidia.dali does not import here; install "
                        "nvidia-dali-cuda130 or use --loader webdataset")
    if choice == "dali":
        from .dali import DaliLoader as Loader
    else:
        from .wds import WdsLoader as Loader
    loader = Loader(train, val, image_size=d.image_size, channels=d.channels,
                    batch_size=cfg.optim.batch_size, rank=rank, world=world, seed=cfg.run.seed,
                    threads=d.loader_threads, device=device,
                    skip_bad_samples=d.skip_bad_samples, flip=d.flip, index_dir=_index_dir(cfg))
    if d.cache_on_device:   # decode once through the pipeline, then serve from the device
        from .cache import DeviceCache
        return DeviceCache(loader)
    return loader


def _index_dir(cfg) -> str:
    """Where to write DALI indexes that cannot go beside read-only shards: beside the data
    cache that `train.py` uses for embedded datasets."""
    from pathlib import Path

    from ..tracking import DEFAULT_HOME  # a constant; tracking imports mlflow lazily
    return str(Path(cfg.data.cache_dir or DEFAULT_HOME / "data").expanduser() / "indexes")
