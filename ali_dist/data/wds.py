"""The fallback pipeline: `webdataset.WebDataset` streams samples (local files, http(s)://,
s3://, gs://, `pipe:` commands), PIL decodes, a `torch.utils.data.DataLoader` runs
`loader_threads` worker processes. Same epoch plan, transforms and output as the DALI loader.

Who reads what. A rank's part of an epoch (`images.py`) is `batches_per_epoch` batches, and
batch b is decoded by DataLoader role b % W (W workers, round-robin as the DataLoader collects
them). Each role gets a contiguous run of samples of the part, exactly its batches' worth,
shuffles it through a buffer and decodes it; so ranks and workers split the data by sample
ranges, not whole shards, and none sits idle when there are fewer shards than ranks x workers.
The DataLoader lives across epochs and starts anywhere: it takes its g-th batch from worker
g % W, so each worker derives which role it plays in each epoch, and batches keep their order
at epoch boundaries and on resume.

Bad samples are found on the way (missing members before the shuffle, decoding and size after
it) and reported by shard and key; a truncated or unreadable tar is reported with the key it
breaks in. Workers send the bad samples they met along with their next batch (or, without
`--skip-bad-samples`, instead of it), and the main process raises or counts them.
"""
from __future__ import annotations

import gc
import itertools
import os
import random
import zlib
from dataclasses import dataclass, replace

import numpy as np
import torch

from .format import ATTR_EXT, CLASS_EXT
from .images import (SHUFFLE_BUFFER, ImageLoader, derive_seed, part_of, part_range,
                     shard_order)
from .samples import BadSample, SampleSpec, check_sample, member_problem
from .shards import (DataError, ShardSet, is_url, locate_truncation, scan_tar, truncated,
                     wds_urls)


@dataclass
class Item:
    """What a worker hands to the main process: one batch, and the bad samples met on the way
    (`error`: the one that stops the run)."""
    epoch: int
    batch: int
    x: torch.Tensor | None
    y: torch.Tensor | None
    skipped: list
    error: BadSample | DataError | None = None

    def pin_memory(self) -> "Item":
        """Called by the DataLoader when it pins memory (batches bound for a GPU)."""
        if self.x is not None:
            self.x = self.x.pin_memory()
        return self


def shard_samples(url: str, wds_url: str, report):
    """The samples of one shard as webdataset groups them, each {ext: bytes, "__key__": key}.
    An unreadable stretch (a truncated tar) ends the shard: `report` gets a BadSample with the
    key it breaks in (for local files found by scanning the tar headers)."""
    import webdataset as wds
    errors = []

    def stop(exn):  # webdataset's handler: remember the first error, stop this shard
        errors.append(exn)
        return False

    ds = wds.WebDataset([wds_url], shardshuffle=False, nodesplitter=None, workersplitter=None,
                        handler=stop, empty_check=False)
    held = None  # a sample is passed on once the next begins: the last may be cut off
    for sample in ds:
        if held is not None:
            yield held
        held = sample
    if not errors:
        if held is not None:
            yield held
        return
    cut = None if is_url(url) else locate_truncation(url)
    if held is not None and cut is not None and cut != held["__key__"]:
        yield held  # complete: the file breaks in a later sample
        key = cut
    else:  # the held sample is the one cut off (or, remote, may be): leave it out
        key = cut or (held["__key__"] if held is not None else None)
    what = str(errors[0]).split(" @ ")[0]
    report(BadSample(url, key, f"truncated or unreadable tar data ({what})"))


class Stream(torch.utils.data.IterableDataset):
    """One rank's batches from position (epoch, batch) on, forever; runs in DataLoader workers
    (or in-process without them). Yields `Item`s."""

    def __init__(self, shards: ShardSet, spec: SampleSpec, out_hw: tuple[int, int],
                 batches_per_epoch: int, batch_size: int, rank: int, world: int, seed: int,
                 flip: bool, skip: bool, epoch: int, batch: int):
        super().__init__()
        self.shards, self.urls = shards, wds_urls(shards.shards)
        self.spec, self.out_hw, self.bpe, self.bs = spec, out_hw, batches_per_epoch, batch_size
        self.rank, self.world, self.seed, self.flip, self.skip = rank, world, seed, flip, skip
        self.start = (epoch, batch)
        self.pending: list[BadSample] = []

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, workers = (info.id, info.num_workers) if info else (0, 1)
        epoch, first = self.start
        served = 0  # batches this DataLoader yielded before the current epoch's `first`
        try:
            while True:
                # The DataLoader takes its g-th batch from worker g % W; batch b of this epoch
                # is its (served + b - first)-th, so this worker gets b = wid + first - served
                # (mod W): the role of that residue.
                role = (wid + first - served) % workers
                yield from self._epoch(epoch, role, workers, first)
                served += self.bpe - first
                epoch, first = epoch + 1, 0
        except DataError as e:  # BadSample included: the main process raises it
            yield Item(epoch, -1, None, None, self._take_pending(), error=e)

    # ---- one epoch of one role ----
    def _epoch(self, epoch: int, role: int, workers: int, first: int):
        counts = self.shards.counts
        order = shard_order(len(counts), self.seed, epoch)
        part = part_of(self.rank, epoch, self.world)
        lo, _ = part_range(sum(counts), part, self.world)
        mine = range(role, self.bpe, workers)                  # this role's batch indices
        # The role's run starts after the runs of the roles before it.
        start = lo + self.bs * sum(len(range(r, self.bpe, workers)) for r in range(role))
        # Reading the whole dataset beyond the run without filling it means all are bad.
        raw = self._raw(order, start, limit=len(mine) * self.bs + sum(counts))
        ranged = itertools.islice(raw, len(mine) * self.bs)
        rng = random.Random(derive_seed(self.seed, epoch, part, role))
        # Shuffle the role's own run; refill from the samples after it only if some were bad.
        stream = itertools.chain(_shuffled(self._complete(ranged), rng), self._complete(raw))
        skip = len(range(role, first, workers)) * self.bs    # resumed: batches already taken
        for _ in range(skip):
            next(stream)
        images, labels = [], []
        for b in mine[len(range(role, first, workers)):]:
            while len(images) < self.bs:
                url, sample = next(stream)
                try:
                    image, label = check_sample(self.spec, sample)
                except ValueError as e:
                    self._report(BadSample(url, sample["__key__"], str(e)))
                    continue
                images.append(self._transform(image, epoch, sample["__key__"]))
                labels.append(label)
            yield Item(epoch, b, torch.stack(images), collate_labels(self.spec, labels),
                       self._take_pending())
            images, labels = [], []

    def _raw(self, order: list[int], start: int, limit: int):
        """(url, sample) from global position `start` of the epoch's shard order on, wrapping
        around at the end, at most `limit` of them; the samples before `start` in its shard are
        read, not decoded."""
        counts = [self.shards.counts[i] for i in order]
        total = sum(counts)
        if total == 0:
            raise DataError(f"{self.shards.source}: no samples")
        start %= total
        k = 0
        while start >= counts[k]:
            start -= counts[k]
            k += 1
        while True:
            i = order[k]
            for n, sample in enumerate(shard_samples(self.shards.shards[i], self.urls[i],
                                                     self._report)):
                if n >= start:
                    if limit == 0:
                        raise DataError(f"{self.shards.source}: read every sample without "
                                        f"filling a batch: all are bad")
                    limit -= 1
                    yield self.shards.shards[i], sample
            start, k = 0, (k + 1) % len(order)

    def _complete(self, raw):
        """Samples with every member they need (the cheap check, before shuffling)."""
        for url, sample in raw:
            problem = member_problem(self.spec, sample)
            if problem:
                self._report(BadSample(url, sample["__key__"], problem))
            else:
                yield url, sample

    def _report(self, bad: BadSample) -> None:
        if not self.skip:
            raise bad
        self.pending.append(bad)

    def _take_pending(self) -> list:
        out, self.pending = self.pending, []
        return out

    def _transform(self, image: np.ndarray, epoch: int, key: str) -> torch.Tensor:
        """(H, W, C) uint8 -> (C, h, w) uint8: centre crop and resize if the size is not the
        model's, then a flip decided by (seed, epoch, key), so a resumed epoch flips alike."""
        if image.shape[:2] != self.out_hw:
            image = resize(image, self.out_hw)
        if self.flip and zlib.crc32(f"{self.seed}:{epoch}:{key}".encode()) & 1:
            image = image[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))



def collate_labels(spec: SampleSpec, labels: list):
    """Per-sample labels -> a batch's y: a LongTensor of classes, a uint8 (B, n_attributes)
    tensor, or None."""
    if spec.label == CLASS_EXT:
        return torch.tensor(labels, dtype=torch.long)
    if spec.label == ATTR_EXT:
        return torch.from_numpy(np.stack(labels))
    return None


def _forked(loader: torch.utils.data.DataLoader):
    """Start the DataLoader's worker processes (fork) with the garbage collector's view of the
    parent frozen: objects the parent still holds (a DALI pipeline, say) must never be
    collected in a child, where their destructors wait for threads that fork did not copy."""
    gc.freeze()  # cheap, unlike a collection; the parent collects as usual after unfreeze
    try:
        return iter(loader)
    finally:
        gc.unfreeze()


def resize(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Centre crop to a square, then bilinear resize (antialiased when shrinking, as DALI's
    `fn.resize(antialias=True)`)."""
    from PIL import Image
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side + 1) // 2, (w - side + 1) // 2  # halves round up, as DALI's crop
    img = Image.fromarray(image[top:top + side, left:left + side].squeeze(2)
                          if image.shape[2] == 1 else image[top:top + side, left:left + side])
    out = np.array(img.resize((hw[1], hw[0]), Image.BILINEAR))
    return out[:, :, None] if out.ndim == 2 else out


def _shuffled(stream, rng: random.Random, size: int = SHUFFLE_BUFFER):
    """A buffer shuffle: fill `size`, then emit a random element for each new one."""
    buf = []
    for item in stream:
        if len(buf) < size:
            buf.append(item)
            continue
        j = rng.randrange(len(buf))
        buf[j], item = item, buf[j]
        yield item
    rng.shuffle(buf)
    yield from buf


class WdsLoader(ImageLoader):
    name = "webdataset"

    def __init__(self, train: ShardSet, val: ShardSet | None, **kw):
        super().__init__(train, val, **kw)
        self.train = self._checked(train)
        self.val = self._checked(val) if val is not None else None
        self._set_total(self.train.total)

    def _checked(self, shards: ShardSet) -> ShardSet:
        """Up front, for local shards with a manifest: a file shorter than recorded is
        truncated; name the sample it breaks in, and (when skipping) count only the samples
        before it, so that the epoch plan matches what can be read."""
        counts = list(shards.counts)
        for i, (shard, size) in enumerate(zip(shards.shards, shards.sizes)):
            if size is None or is_url(shard) or os.path.getsize(shard) >= size:
                continue
            entries = scan_tar(shard, partial=True)
            cut = truncated(shard, entries)
            self.bad.handle(BadSample(shard, cut[0].key if cut else None,
                                      f"truncated: {os.path.getsize(shard)} bytes, the "
                                      f"manifest records {size}"))
            counts[i] = len(entries) - len(cut)
        return replace(shards, counts=counts)

    def _stream(self, epoch: int, batch: int):
        stream = Stream(self.train, self.spec, self.out_hw, self.batches_per_epoch,
                        self.batch_size, self.rank, self.world, self.seed, self.flip,
                        self.bad.skip, epoch, batch)
        if self.threads > 0:
            items = _forked(torch.utils.data.DataLoader(stream, batch_size=None,
                                                        num_workers=self.threads,
                                                        prefetch_factor=2,
                                                        pin_memory=self.device.type == "cuda"))
        else:
            items = iter(stream)
        for item in items:
            for bad in item.skipped:
                self.bad.handle(bad)
            if item.error is not None:  # a worker stopped: say why, here
                raise item.error
            yield item.epoch, item.batch, item.x, item.y

    def _read_ordered(self, shards: ShardSet, n: int):
        spec = SampleSpec.of(shards, self.spec.channels)
        xs, ys = [], []
        for shard, url in zip(shards.shards, wds_urls(shards.shards)):
            for sample in shard_samples(shard, url, self.bad.handle):
                try:
                    image, label = check_sample(spec, sample)
                except ValueError as e:
                    self.bad.handle(BadSample(shard, sample["__key__"], str(e)))
                    continue
                if image.shape[:2] != self.out_hw:
                    image = resize(image, self.out_hw)
                xs.append(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))))
                ys.append(label)
                if len(xs) == n:
                    return torch.stack(xs), collate_labels(spec, ys)
        if not xs:
            raise DataError(f"{shards.source}: no usable samples for the validation batch")
        return torch.stack(xs), collate_labels(spec, ys)

