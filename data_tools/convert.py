"""Turns a `Dataset` into an output directory of shards, indexes and a manifest.

Order of work, chosen so that no crash can leave an output that looks complete:
  1. if the directory already holds a complete output made with the same parameters, stop;
  2. delete its manifest (from here on the directory reads as incomplete), then every shard,
     index and `.tmp` left by earlier runs;
  3. write each split (shards appear one by one, each only once finished: see `writer.py`);
  4. write the manifest, atomically, last.

Each split is written in a seeded shuffled order (`splits.stable_shuffle`), so shards of
class-sorted sources (image folders) do not hold one class each and a reader's shuffle buffer
sees mixed classes; tar keys stay the samples' source positions.
"""
from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path
from typing import Iterator

from ali_dist.data.format import (ATTR_EXT, CLASS_EXT, MANIFEST, SPLITS, index_name,
                                  sample_key, shard_name)

from . import manifest
from .dataset import Dataset, Item, Sample, SourceError
from .progress import Progress
from .splits import stable_shuffle
from .writer import TMP_SUFFIX, ShardRecord, SplitWriter

DEFAULT_SHARD_MB = 100.0
DEFAULT_MAX_COUNT = 10_000
ENCODE_CHUNK = 64               # items per task sent to an encoding worker


def members(sample: Sample, image_format: str) -> list[tuple[str, bytes]]:
    """The tar members of one sample, in the format's order: image, class, attributes."""
    out = [(image_format, sample.image)]
    if sample.label is not None:
        out.append((CLASS_EXT, str(sample.label).encode("ascii")))
    if sample.attributes is not None:
        out.append((ATTR_EXT, sample.attributes))
    return out


def _encoded(dataset: Dataset, items: list[Item], workers: int) -> Iterator[Sample]:
    payloads = (item.payload for item in items)
    if workers <= 1:
        yield from map(dataset.encode, payloads)
        return
    # fork: workers inherit the imported modules and the source's arrays instead of
    # re-importing and re-loading them; imap keeps the order, so output stays deterministic.
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(dataset.encode, payloads, chunksize=ENCODE_CHUNK)


def _remove_previous(out: Path) -> None:
    """Delete what earlier runs left: the manifest first, then, per split, the run of shards
    (finished or `.tmp`) from index 0 on; runs of this tool always write them contiguously."""
    (out / MANIFEST).unlink(missing_ok=True)
    (out / (MANIFEST + TMP_SUFFIX)).unlink(missing_ok=True)
    for split in SPLITS:
        i = 0
        while True:
            shard = shard_name(split, i)
            paths = [out / name for base in (shard, index_name(shard))
                     for name in (base, base + TMP_SUFFIX)]
            present = [p for p in paths if p.exists()]
            if not present:
                break
            for p in present:
                p.unlink()
            i += 1


def conversion_record(options: dict, shard_mb: float, max_count: int, seed: int) -> dict:
    """The manifest's "conversion" entry: source options plus sharding parameters. An output
    is re-used only when this matches exactly."""
    return {**options, "shard_mb": float(shard_mb), "max_count": int(max_count), "seed": int(seed)}


def convert(dataset: Dataset, out_dir: str | Path, *, shard_mb: float = DEFAULT_SHARD_MB,
            max_count: int = DEFAULT_MAX_COUNT, seed: int = 0, workers: int = 1,
            force: bool = False, progress: bool = True) -> Path:
    """Write `dataset` into `out_dir` as shards of at most `shard_mb` MB (10^6 bytes) and
    `max_count` samples; returns the manifest's path. Skips the work when `out_dir` already
    holds a complete output made with the same parameters, unless `force`."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SourceError(f"{out}: output exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    unknown = set(dataset.splits) - set(SPLITS)
    if unknown:
        raise ValueError(f"splits {sorted(unknown)} are not in the format's {SPLITS}")
    conversion = conversion_record(dataset.options, shard_mb, max_count, seed)
    if not force and manifest.is_complete(out, conversion):
        if progress:
            print(f"{out}: complete output with the same parameters exists; skipped "
                  f"(--force rewrites it)", file=sys.stderr)
        return out / MANIFEST

    _remove_previous(out)
    records: dict[str, list[ShardRecord]] = {}
    for split in (s for s in SPLITS if s in dataset.splits):
        items = stable_shuffle(dataset.splits[split], seed)
        with SplitWriter(out, split, int(shard_mb * 1e6), max_count) as writer, \
                Progress(len(items), f"{dataset.name} {split}", enabled=progress) as bar:
            for item, sample in zip(items, _encoded(dataset, items, workers)):
                writer.add(sample_key(item.key), members(sample, dataset.image_format))
                bar.update()
            records[split] = writer.close()
    return manifest.write(out, manifest.build(dataset, records, conversion))
