"""What a source hands to the converter: a `Dataset` (metadata + items per split) whose
`encode` turns one item into a `Sample` (encoded image, label, attributes).

Sources only read their own on-disk format; they never touch shards, so every source gets the
same sharding, indexing, ordering and manifest for free (see `convert.py`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


class SourceError(Exception):
    """Bad input. The message names the file or directory and says what is wrong with it."""


@dataclass(frozen=True)
class Sample:
    image: bytes                    # encoded PNG or JPEG at the dataset's image size
    label: int | None = None        # class index, if the source has classes
    attributes: bytes | None = None  # one byte (0/1) per attribute, if the source has them


@dataclass(frozen=True)
class Item:
    """One source sample, not yet encoded.

    `key` is the sample's position in the source's own order (CIFAR: row across the batches in
    file order; folders: the sorted file list); it becomes the tar key, so every written sample
    can be traced back to its source even though shards are written in shuffled order.
    `payload` is whatever `Dataset.encode` needs (an array, a path); it must be picklable so
    encoding can run in worker processes.
    """
    key: int
    payload: Any


@dataclass
class Dataset:
    name: str
    image_size: int                 # images are square: image_size x image_size
    channels: int                   # 1 (grayscale) or 3 (RGB)
    image_format: str               # a member extension from ali_dist.data.format.IMAGE_EXTS
    splits: dict[str, list[Item]]   # split name (format.SPLITS) -> items in source order
    encode: Callable[[Any], Sample]  # payload -> Sample; module-level (picklable)
    classes: list[str] | None = None
    attributes: list[str] | None = None
    # The conversion parameters (source path, size, crop, ...): recorded in the manifest so a
    # re-run with the same parameters can recognise its own complete output and skip.
    options: dict[str, Any] = field(default_factory=dict)
