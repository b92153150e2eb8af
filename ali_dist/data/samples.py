"""One sample's contract, checked by the same code for both loaders: the members it must have,
an image that decodes to the dataset's size, a label that parses. And the policy for a bad
sample: stop with an error naming the shard and key, or (`--skip-bad-samples`) skip it with a
counted warning.

The webdataset loader runs `check_sample` on every sample; the DALI loader checks members up
front from the shard indexes and runs `check_sample` only to find the culprit when DALI fails
(its own errors do not say which sample it was reading).
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np

from .format import ATTR_EXT, CLASS_EXT
from .shards import DataError, ShardSet


class BadSample(DataError):
    """A sample that breaks the contract: `shard`, `key` (None when the shard itself is
    unreadable past some point) and `problem` in words."""

    def __init__(self, shard: str, key: str | None, problem: str):
        self.shard, self.key, self.problem = shard, key, problem
        where = f"{shard}: sample {key!r}" if key is not None else shard
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):  # picklable across DataLoader worker processes
        return BadSample, (self.shard, self.key, self.problem)


@dataclass(frozen=True)
class SampleSpec:
    """What every sample of a dataset must look like, and what it becomes."""
    image_exts: tuple[str, ...]        # accepted image members
    image_hw: tuple[int, int]          # the size every image must decode to
    channels: int                      # output channels (the model's): 1 grey, 3 RGB
    label: str | None                  # CLASS_EXT, ATTR_EXT or None
    n_classes: int | None = None       # known from a manifest
    n_attributes: int | None = None

    @classmethod
    def of(cls, shards: ShardSet, channels: int) -> "SampleSpec":
        return cls(shards.image_exts, shards.image_hw, channels, shards.label,
                   len(shards.classes) if shards.classes else None, shards.n_attributes)

    @property
    def wanted(self) -> list[str]:
        """Members a reader should extract: the image, then the label member if any."""
        return [";".join(self.image_exts)] + ([self.label] if self.label else [])


def member_problem(spec: SampleSpec, exts) -> str | None:
    """What a sample with these member extensions lacks, or None."""
    exts = set(exts)
    if not exts & set(spec.image_exts):
        return (f"no image member (.{'/.'.join(spec.image_exts)}); members: "
                f"{', '.join(sorted(exts)) or 'none'}")
    if spec.label and spec.label not in exts:
        what = "class label" if spec.label == CLASS_EXT else "attributes"
        return f"missing its {what} (.{spec.label}) although the dataset has them"
    return None


def image_member(spec: SampleSpec, sample: dict) -> bytes:
    return next(sample[e] for e in spec.image_exts if e in sample)


def decode_image(data: bytes, channels: int) -> np.ndarray:
    """Encoded PNG/JPEG -> (H, W, channels) uint8; ValueError saying why it failed."""
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # decode now: PIL is lazy, and truncated data fails only here
            img = img.convert("L" if channels == 1 else "RGB")
    except Exception as e:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError...
        raise ValueError(f"image does not decode ({type(e).__name__}: {e})") from None
    arr = np.array(img)  # a writable copy: torch.from_numpy refuses read-only arrays
    return arr[:, :, None] if arr.ndim == 2 else arr


def parse_class(data: bytes, n_classes: int | None) -> int:
    """`.cls` holds the class index as ASCII decimal text."""
    try:
        value = int(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"class label {data[:20]!r} is not a decimal integer") from None
    if value < 0 or (n_classes is not None and value >= n_classes):
        raise ValueError(f"class label {value} outside 0..{(n_classes or 0) - 1}")
    return value


def parse_attributes(data: bytes, n_attributes: int | None) -> np.ndarray:
    if n_attributes is not None and len(data) != n_attributes:
        raise ValueError(f"{len(data)} attribute bytes, the dataset has {n_attributes}")
    return np.frombuffer(data, dtype=np.uint8).copy()


def check_sample(spec: SampleSpec, sample: dict):
    """(image (H, W, C) uint8, label or None) for a sample dict {ext: bytes}, or ValueError
    with the problem. The image is checked against the dataset's size before any resize."""
    problem = member_problem(spec, sample)
    if problem:
        raise ValueError(problem)
    image = decode_image(image_member(spec, sample), spec.channels)
    if image.shape[:2] != tuple(spec.image_hw):
        raise ValueError(f"image is {image.shape[0]}x{image.shape[1]} px, the dataset's "
                         f"images are {spec.image_hw[0]}x{spec.image_hw[1]}")
    label = None
    if spec.label == CLASS_EXT:
        label = parse_class(sample[CLASS_EXT], spec.n_classes)
    elif spec.label == ATTR_EXT:
        label = parse_attributes(sample[ATTR_EXT], spec.n_attributes)
    return image, label


class BadSamples:
    """The bad-sample policy of one loader, and its count."""

    def __init__(self, skip: bool):
        self.skip = skip
        self.count = 0
        self.seen: set[tuple[str, str | None]] = set()

    def handle(self, bad: BadSample) -> None:
        """Raise `bad`, or count it once and warn."""
        if not self.skip:
            raise bad
        if (bad.shard, bad.key) in self.seen:
            return
        self.seen.add((bad.shard, bad.key))
        self.count += 1
        warnings.warn(f"skipped bad sample ({self.count} so far): {bad}", stacklevel=2)
