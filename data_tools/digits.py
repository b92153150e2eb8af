"""The embedded dataset: scikit-learn's bundled handwritten digits (no download needed).

`sklearn.datasets.load_digits()`: 1797 8x8 images with values 0..16, labels 0-9. Stored as
32x32 grayscale PNG (1 channel): values scaled to 0..255 (round(v * 255 / 16)), then upsampled
4x bilinearly (smooth strokes, no overshoot, values stay in 0..255).
Splits: a seeded permutation (`splits.stable_permutation`, seed 0) of the 1797 images, cut into
train 1437 / val 180 / test 180; within a split, samples keep sklearn's order. Tar keys are
sklearn's indices.

`ensure_digits(cache_dir)` converts on first use into `<cache_dir>/digits/` and is a cheap no-op
afterwards; see its docstring for how it stays safe under crashes and concurrent callers.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from ali_dist.data.format import MANIFEST

from . import manifest
from .convert import DEFAULT_SHARD_MB, convert, conversion_record
from .dataset import Dataset, Item, Sample
from .images import PNG, encode_array
from .splits import stable_permutation

SOURCE_SIDE = 8
SIDE = 32
SOURCE_MAX = 16
SPLIT_SIZES = {"train": 1437, "val": 180, "test": 180}
SEED = 0
CLASSES = [str(d) for d in range(10)]
# Small shards, so the train split has several (1437 -> 512 + 512 + 413): enough for
# multi-worker and multi-rank loaders to have one shard each in tests.
MAX_COUNT = 512
DIR_NAME = "digits"
LOCK_NAME = ".digits.lock"
OPTIONS = {"source": "digits", "side": SIDE, "split_sizes": SPLIT_SIZES}


def upsample(pixels: np.ndarray) -> np.ndarray:
    """An 8x8 image with values 0..16 -> the stored 32x32 uint8 image."""
    scaled = np.rint(np.asarray(pixels, dtype=np.float64) * (255.0 / SOURCE_MAX)).astype(np.uint8)
    return np.asarray(Image.fromarray(scaled).resize((SIDE, SIDE), Image.Resampling.BILINEAR))


def encode_sample(payload: tuple[np.ndarray, int]) -> Sample:
    pixels, label = payload
    return Sample(encode_array(upsample(pixels), PNG), int(label))


def load() -> Dataset:
    from sklearn.datasets import load_digits    # imported here: sklearn is slow to import
    digits = load_digits()
    images, labels = digits.images, digits.target
    if len(images) != sum(SPLIT_SIZES.values()):
        raise RuntimeError(f"sklearn's digits has {len(images)} images, expected "
                           f"{sum(SPLIT_SIZES.values())}")
    order, splits, start = stable_permutation(len(images), SEED), {}, 0
    for split, n in SPLIT_SIZES.items():
        keys = sorted(order[start:start + n])
        splits[split] = [Item(k, (images[k], int(labels[k]))) for k in keys]
        start += n
    return Dataset(name="digits", image_size=SIDE, channels=1, image_format=PNG, splits=splits,
                   encode=encode_sample, classes=CLASSES, options=dict(OPTIONS))


def convert_digits(out_dir: str | Path, force: bool = False, progress: bool = True) -> Path:
    """Convert into `out_dir` directly (the CLI's `digits` command); returns the manifest."""
    return convert(load(), out_dir, max_count=MAX_COUNT, seed=SEED, force=force,
                   progress=progress)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (where fcntl exists; elsewhere the atomic rename in
    `ensure_digits` alone keeps the output consistent, at the cost of duplicate work)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_digits(cache_dir: str | Path, progress: bool = False) -> Path:
    """The path of `<cache_dir>/digits/manifest.json`, converting the digits first unless a
    complete conversion is already there.

    Complete means: a manifest of this format made with the current parameters, and every shard
    and index it lists present with the recorded size (no shard is read, so this is cheap).
    Anything else (a crash mid-way, a deleted or truncated shard) is converted again.
    The conversion is written into a fresh temporary directory beside the target and renamed
    into place, so the target is never seen half-written; a lock file serialises concurrent
    callers (processes on one machine, or on a file system with working flock), and the loser
    of a race finds the winner's complete output and returns it.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / DIR_NAME
    expected = conversion_record(OPTIONS, DEFAULT_SHARD_MB, MAX_COUNT, SEED)
    if manifest.is_complete(target, expected):
        return target / MANIFEST
    with _locked(cache / LOCK_NAME):
        if manifest.is_complete(target, expected):     # another process finished meanwhile
            return target / MANIFEST
        tmp = Path(tempfile.mkdtemp(prefix=f".{DIR_NAME}-new-", dir=cache))
        try:
            convert(load(), tmp, max_count=MAX_COUNT, seed=SEED, progress=progress)
            _replace_dir(tmp, target, expected)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target / MANIFEST


def _replace_dir(new: Path, target: Path, expected: dict) -> None:
    """Move `new` to `target`, moving an incomplete `target` out of the way first."""
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{DIR_NAME}-old-", dir=target.parent))
        try:
            os.rename(target, old / DIR_NAME)
        except FileNotFoundError:       # removed by a concurrent caller without a lock
            pass
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.rename(new, target)
    except OSError:
        # Without a lock, another caller may have renamed its output in first: keep theirs if
        # it is complete (both are byte-identical), otherwise report the failure.
        if not manifest.is_complete(target, expected):
            raise
