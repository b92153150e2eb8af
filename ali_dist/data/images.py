"""Image loaders: `ImageLoader` holds what the DALI and webdataset pipelines share: the
epoch plan, the data position, the validation batch and the bad-sample count.

The epoch plan is a function of (seed, epoch) alone, so every rank derives the same one and a
resumed run re-derives it:
  1. the shards are put in a permuted order;
  2. their concatenated samples are cut into `world` contiguous parts (as DALI's
     `shard_id`/`num_shards` cut them) and rank r reads part (r + epoch) % world, so each rank
     sees other data every epoch even when the dataset is one shard;
  3. a rank shuffles its part through a buffer of SHUFFLE_BUFFER samples and takes exactly
     `batches_per_epoch` full batches: every rank takes the same number of steps, and the
     remainder of a part (less than a batch per rank) sits out this epoch.
The data position is (epoch, batch within the epoch). Resuming rebuilds that epoch's plan and
skips `batch` batches. The cost, once, on the first resumed epoch: DALI decodes and discards
those batches (at most one epoch of decoding); webdataset reads but does not decode them.
"""
from __future__ import annotations

import functools
import glob
import os

import numpy as np
import torch

from .position import DataPosition
from .samples import BadSamples, SampleSpec
from .shards import TRAIN, VAL, DataError, ShardSet, resolve, validation_set

SHUFFLE_BUFFER = 1024   # samples in a rank's shuffle buffer (DALI's default `initial_fill`)
VALIDATION_BATCH = 256  # decode batch size when reading the validation images


def shard_order(n: int, seed: int, epoch: int) -> list[int]:
    """The epoch's shard order, the same on every rank."""
    return np.random.default_rng([seed & 0xFFFFFFFF, epoch]).permutation(n).tolist()


def part_of(rank: int, epoch: int, world: int) -> int:
    return (rank + epoch) % world


def part_range(total: int, part: int, parts: int) -> tuple[int, int]:
    """Samples [start, end) of part `part` of `parts`: DALI's cut of a reader into shards."""
    return total * part // parts, total * (part + 1) // parts


def derive_seed(*values: int) -> int:
    """A 31-bit seed from several integers (DALI wants a non-negative int32)."""
    words = [v & 0xFFFFFFFF for v in values]
    return int(np.random.SeedSequence(words).generate_state(1)[0] & 0x7FFFFFFF)


@functools.lru_cache(maxsize=1)
def dali_available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
        import nvidia.dali.plugin.pytorch  # noqa: F401
    except ImportError:
        return False
    return True


class ImageLoader(DataPosition):
    """Batches `(x, y)` of one rank, forever: x float in [0, 1], (B, C, H, W) on `device`;
    y a LongTensor of classes, a uint8 (B, n_attributes) tensor, or None.

    Subclasses implement `_stream(epoch, batch)`, yielding `(epoch, batch, x_uint8, y)` from
    that position on, and `_read_ordered(shards, n)`, the first n samples of a split in order.
    """
    name = "?"

    def __init__(self, train: ShardSet, val: ShardSet | None, *, image_size: int, channels: int,
                 batch_size: int, rank: int = 0, world: int = 1, seed: int = 0,
                 threads: int = 2, device: torch.device | str = "cpu",
                 skip_bad_samples: bool = False, flip: bool = False,
                 index_dir: str | None = None):
        self.train, self.val = train, val
        self.spec = SampleSpec.of(train, channels)
        self.out_hw = (image_size, image_size)
        self.batch_size, self.rank, self.world, self.seed = batch_size, rank, world, seed
        self.threads, self.device, self.flip = threads, torch.device(device), flip
        self.index_dir = index_dir
        self.bad = BadSamples(skip_bad_samples)
        self.epoch, self.batch = 0, 0
        self._val_cache: torch.Tensor | None = None
        self._set_total(train.total)

    def _set_total(self, total: int) -> None:
        self.batches_per_epoch = total // (self.batch_size * self.world)
        if self.batches_per_epoch == 0:
            raise DataError(f"{self.train.source}: {total} samples cannot fill one batch of "
                            f"{self.batch_size} on each of {self.world} worker(s)")

    @property
    def skipped_samples(self) -> int:
        return self.bad.count

    def __iter__(self):
        for epoch, batch, x, y in self._stream(self.epoch, self.batch):
            if batch + 1 >= self.batches_per_epoch:
                self.epoch, self.batch = epoch + 1, 0
            else:
                self.epoch, self.batch = epoch, batch + 1
            yield self._x(x), None if y is None else y.to(self.device, non_blocking=True)

    def _x(self, x: torch.Tensor) -> torch.Tensor:
        # Moved as uint8 (a quarter of the bytes), made float on the device.
        return x.to(self.device, non_blocking=True).float().div_(255)

    def validation_batch(self, n: int) -> torch.Tensor:
        """The first n images of the validation split (of the training data when there is
        none), in order, without augmentation; fewer if the split is smaller. Cached."""
        source = self.val or self.train
        if self._val_cache is None or (len(self._val_cache) < n
                                       and len(self._val_cache) < source.total):
            self._val_cache = self._read_ordered(source, min(n, source.total))[0]
        return self._x(self._val_cache[:n])

    def split(self, name: str) -> ShardSet | None:
        """One split of the training data's dataset by name (train, val, test, extra): from its
        manifest, or `<name>-*.tar` beside its shards; None if the dataset has no such split."""
        if name == TRAIN:
            return self.train
        if name == VAL and self.val is not None:
            return self.val
        if self.train.manifest:
            return resolve(self.train.manifest, name) if name in self.train.splits else None
        if self.train.local and self.train.shards:
            directory = os.path.dirname(self.train.shards[0])
            if glob.glob(os.path.join(glob.escape(directory), f"{name}-*.tar")):
                return resolve(directory, name)
        return None

    def labelled(self, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The first n images of a split (fewer if it is smaller) with their labels, in order,
        without augmentation: what the probes read. y is None for unlabelled data."""
        shards = self.split(split)
        if shards is None:
            raise DataError(f"{self.train.source}: the dataset has no {split!r} split")
        x, y = self._read_ordered(shards, min(n, shards.total))
        return self._x(x), y

    # ---- what a pipeline implements ----
    def _stream(self, epoch: int, batch: int):
        raise NotImplementedError

    def _read_ordered(self, shards: ShardSet, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The first n samples of `shards` in order: (x uint8 (n, C, H, W), y or None)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.train.describe()}; batch {self.batch_size} x "
                f"{self.world} worker(s), {self.batches_per_epoch} batches/epoch>")
