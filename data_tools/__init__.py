"""data_tools: convert datasets into the ali-dist shard format (`ali_dist/data/format.py`).

Command line: `python -m data_tools --help`. From Python:

    from data_tools import ensure_digits          # the embedded dataset, converted on first use
    manifest_path = ensure_digits("~/.cache/ali-dist")

    from data_tools import cifar, convert         # any source: load a Dataset, then convert it
    convert.convert(cifar.load("cifar-10-batches-py", val=5000), "data/cifar10")

Modules: one per source (`cifar`, `svhn`, `celeba`, `folders`, `digits`), `dataset` (what a
source produces), `convert` (ordering, skip/rewrite, manifest last), `writer` (tar shards and
DALI indexes, atomically), `manifest`, `images` (crop/resize/encode), `splits` (seeded orders).
"""
from __future__ import annotations

__all__ = ["ensure_digits"]


def ensure_digits(cache_dir, progress: bool = False):
    """See `data_tools.digits.ensure_digits` (imported lazily: it pulls in scikit-learn)."""
    from .digits import ensure_digits as _ensure
    return _ensure(cache_dir, progress=progress)
