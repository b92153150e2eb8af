"""The DALI pipeline: `fn.readers.webdataset` -> image decoder (`mixed` on the worker's GPU,
`cpu` without one) -> centre crop + resize when the data's size is not the model's -> optional
random flip -> uint8 CHW, through `DALIGenericIterator`; the base class makes it float.

One pipeline per epoch (a build costs about 10 ms): its shard order, reader shard and seeds
come from the epoch plan (`images.py`), so any epoch can be rebuilt exactly on resume.

Bad input. Cheap checks run up front on every shard's DALI index (generated with DALI's
`wds2idx` when missing): samples that lack a member, and samples whose data runs past the end
of a truncated file. What only decoding can reveal (a corrupt image, a wrong size, a bad
label) makes DALI fail with a message that names no sample; we then replay the failing
batches with a reader-only pipeline (same seed, so the same samples), check those samples with
the Python checks of `samples.py`, and report the culprit by shard and key. Skipped samples
are left out of the index files the next pipeline reads (filtered copies in a temp dir).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np
import torch

from .format import ATTR_EXT, CLASS_EXT
from .images import (SHUFFLE_BUFFER, VALIDATION_BATCH, ImageLoader, derive_seed, part_of,
                     shard_order)
from .format import index_name
from .samples import BadSample, SampleSpec, check_sample, member_problem
from .shards import (DataError, Entry, ShardSet, index_cache_path, read_index, split_key,
                     write_index)

READER = "Reader"
# DALI's prefetch_queue_depth: batches decoded ahead of the one the step reads. With `mixed`
# decoding a GPU step at ~10 ms per batch leaves no slack for a decode hiccup at depth 2: the
# GPU pipeline keeps 3 ready (3 x batch x 12 KB at 64 px: a few MB of device memory).
PREFETCH = 2
PREFETCH_GPU = 3
READER_PREFETCH = 2               # the reader's own queue: file reads run ahead of decoding
LABEL_PAD = (0, 9, 10, 13, 32)    # bytes around an ASCII class label: DALI's padding, whitespace


@dataclass(frozen=True)
class Plan:
    """One pipeline's reading: which shards in which order, which part of them, how."""
    shards: ShardSet
    spec: SampleSpec
    order: tuple[int, ...]
    part: int
    parts: int
    shuffle: bool
    seed: int
    flip: bool
    batch_size: int
    full_batches: bool


class _Anomaly(Exception):
    """A batch DALI produced but that breaks the contract (a wrong image size, a bad label)."""


class DaliLoader(ImageLoader):
    name = "dali"

    def __init__(self, train: ShardSet, val: ShardSet | None, **kw):
        super().__init__(train, val, **kw)
        if self.device.type == "cuda":
            self.device_id = (self.device.index if self.device.index is not None
                              else torch.cuda.current_device())
        else:
            self.device_id = None  # CPU-only DALI
        self.prefetch = PREFETCH_GPU if self.device_id is not None else PREFETCH
        self._tmp = tempfile.TemporaryDirectory(prefix="ali-dali-")  # filtered indexes
        self._tables: dict[str, tuple[str, list[Entry]]] = {}   # shard -> (index, samples)
        self._excluded: dict[str, set[str]] = {}                # shard -> keys left out
        self._filtered: dict[tuple[str, int], str] = {}
        for shards in (train, val):
            if shards is not None:
                self._prepare(shards)
        self._set_total(self._usable(train))

    # ---- up-front checks ----
    def _prepare(self, shards: ShardSet) -> None:
        spec = SampleSpec.of(shards, self.spec.channels)
        for i, shard in enumerate(shards.shards):
            idx = self._index(shard, shards.indexes[i] if shards.indexes else None)
            entries = read_index(idx)
            if shards.manifest and len(entries) != shards.counts[i]:
                raise DataError(f"{idx}: lists {len(entries)} samples, {shards.manifest} says "
                                f"{shards.counts[i]} for {shard}")
            self._tables[shard] = (idx, entries)
            size = os.path.getsize(shard)
            for e in entries:
                if e.end > size:
                    expected = shards.sizes[i] if shards.sizes else None
                    note = f" (the manifest records {expected} bytes)" if expected else ""
                    self._reject(BadSample(shard, e.key, f"truncated: its data runs to byte "
                                                         f"{e.end} but the file has {size} "
                                                         f"bytes{note}"))
                    continue
                problem = member_problem(spec, e.members)
                if problem:
                    self._reject(BadSample(shard, e.key, problem))

    def _index(self, shard: str, given: str | None) -> str:
        """The shard's DALI index: the manifest's, the one beside it, or a generated one (beside
        the shard where its directory is writable, else in the index cache)."""
        for idx in (given, index_name(shard)):
            if idx and os.path.isfile(idx):
                return idx
        beside = given or index_name(shard)
        if os.access(os.path.dirname(os.path.abspath(beside)), os.W_OK):
            write_index(shard, beside)
            return beside
        cached = index_cache_path(shard, self.index_dir or self._tmp.name)
        if not os.path.isfile(cached):
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            write_index(shard, cached)
        return cached

    def _reject(self, bad: BadSample) -> None:
        self.bad.handle(bad)  # raises unless skipping
        self._excluded.setdefault(bad.shard, set()).add(bad.key)

    def _usable(self, shards: ShardSet) -> int:
        return sum(len(self._tables[s][1]) - len(self._excluded.get(s, ())) for s in shards.shards)

    def _files(self, plan: Plan) -> tuple[list[str], list[str]]:
        """The plan's shards and index files, leaving out skipped samples."""
        files, indexes = [], []
        for i in plan.order:
            shard = plan.shards.shards[i]
            idx, entries = self._tables[shard]
            out = self._excluded.get(shard)
            if out:
                key = (shard, len(out))
                if key not in self._filtered:
                    keep = [e.line for e in entries if e.key not in out]
                    if not keep:
                        continue
                    path = os.path.join(self._tmp.name, f"{len(self._filtered)}.idx")
                    with open(path, "w") as f:
                        f.write(f"v1.2 {len(keep)}\n" + "".join(line + "\n" for line in keep))
                    self._filtered[key] = path
                idx = self._filtered[key]
            files.append(shard)
            indexes.append(idx)
        return files, indexes

    # ---- pipelines ----
    def _pipeline(self, plan: Plan, files: list[str], indexes: list[str], raw: bool = False):
        from nvidia.dali import fn, pipeline_def, types
        import nvidia.dali.math as dmath
        spec, gpu = plan.spec, self.device_id is not None
        resize = tuple(plan.shards.image_hw) != self.out_hw

        @pipeline_def(batch_size=plan.batch_size, num_threads=max(1, self.threads),
                      device_id=self.device_id, seed=plan.seed,
                      prefetch_queue_depth=self.prefetch)
        def pipe():
            outs = fn.readers.webdataset(
                paths=files, index_paths=indexes, ext=spec.wanted, name=READER,
                random_shuffle=plan.shuffle, initial_fill=SHUFFLE_BUFFER, seed=plan.seed,
                shard_id=plan.part, num_shards=plan.parts, pad_last_batch=False,
                missing_component_behavior="error", prefetch_queue_depth=READER_PREFETCH)
            outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
            encoded, label = outs[0], (outs[1] if len(outs) > 1 else None)
            if raw:  # for locating a failure: the encoded members and where they came from
                return (encoded, fn.get_property(encoded, key="source_info"), *outs[1:])
            shape = fn.peek_image_shape(encoded)  # as stored: checked against the dataset
            img = fn.decoders.image(encoded, device="mixed" if gpu else "cpu",
                                    output_type=types.GRAY if spec.channels == 1 else types.RGB,
                                    adjust_orientation=False)  # as PIL: no EXIF rotation
            if resize:
                side = fn.cast(dmath.min(shape[0], shape[1]), dtype=types.FLOAT)
                img = fn.crop(img, crop_h=side, crop_w=side)  # centred
                img = fn.resize(img, size=list(self.out_hw), interp_type=types.INTERP_LINEAR,
                                antialias=True)
            mirror = fn.random.coin_flip(seed=plan.seed + 1) if plan.flip else 0
            img = fn.crop_mirror_normalize(img, dtype=types.UINT8, output_layout="CHW",
                                           mirror=mirror)
            result = [img, shape]
            if label is not None:  # ASCII class labels vary in length: pad to the batch's max
                result.append(fn.pad(label, axes=[0]) if spec.label == CLASS_EXT else label)
            return tuple(result)

        p = pipe()
        p.build()
        return p

    def _iterator(self, pipe, plan: Plan):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy
        names = ["x", "shape"] + (["y"] if plan.spec.label else [])
        # Training: full batches only, and `_run` stops after batches_per_epoch of them, so
        # every rank takes the same number of steps and the rest of its part (under a batch)
        # sits out, as DROP would do. FILL rather than DROP only matters when samples were
        # skipped after the epoch length was fixed: the last batch is then topped up by
        # wrapping around the part instead of the epoch ending short on this rank alone.
        policy = LastBatchPolicy.FILL if plan.full_batches else LastBatchPolicy.PARTIAL
        return DALIGenericIterator(pipe, names, reader_name=READER, last_batch_policy=policy,
                                   auto_reset=False, prepare_first_batch=False)

    def _run(self, plan: Plan, start: int, stop: int | None):
        """Batches start..stop-1 of a plan as (index, x uint8, y), recovering from bad samples:
        each failure is located, then raised, or its samples are left out and the pipeline is
        rebuilt and brought back to where it was."""
        done = start
        while True:
            files, indexes = self._files(plan)
            if not files:
                return
            pipe = self._pipeline(plan, files, indexes)
            it, pos = self._iterator(pipe, plan), 0
            try:
                while stop is None or pos < stop:
                    try:
                        out = next(it)[0]
                    except StopIteration:
                        return
                    y = self._labels(plan.spec, out)
                    if pos >= done:
                        yield pos, out["x"], y
                        done = pos + 1
                    pos += 1
                return
            except (RuntimeError, _Anomaly) as e:
                # Keep the words only: the traceback would keep DALI's frames, and with them
                # the pipeline, alive (a pipeline collected later in a forked process hangs).
                failure = f"{type(e).__name__}: {e}"
            finally:
                del it, pipe
            for bad in self._locate(plan, files, indexes, pos, failure):
                self._reject(bad)

    @staticmethod
    def _labels(spec: SampleSpec, out: dict) -> torch.Tensor | None:
        """The batch's labels, after checking what DALI cannot: image sizes and labels."""
        shape = out["shape"].cpu()
        h, w = spec.image_hw
        if not bool(((shape[:, 0] == h) & (shape[:, 1] == w)).all()):
            raise _Anomaly("an image of the wrong size")
        if spec.label == ATTR_EXT:
            y = out["y"]
            if spec.n_attributes is not None and y.shape[1] != spec.n_attributes:
                raise _Anomaly("attributes of the wrong length")
            return y
        if spec.label != CLASS_EXT:
            return None
        return parse_classes(out["y"].cpu(), spec.n_classes)

    # ---- finding the culprit ----
    def _locate(self, plan: Plan, files, indexes, pos: int, failure: str) -> list[BadSample]:
        """The bad samples behind a failure at batch `pos`: first among the samples of batches
        pos..pos+prefetch+1 (replayed by a reader-only pipeline), else by checking every sample
        of the plan's shards. Raises DataError when none can be found."""
        bad = self._check(plan.spec, self._replay(plan, files, indexes, pos))
        if not bad:  # the replay found nothing: check the shards themselves, in order
            bad = self._check(plan.spec, self._scan(files), first_only=not self.bad.skip)
        if not bad:
            detail = " ".join(line.strip() for line in failure.strip().splitlines()[-4:])
            raise DataError(f"DALI failed reading {len(files)} shard(s) ({files[0]}"
                            f"{', ...' if len(files) > 1 else ''}) and no sample breaks the "
                            f"format: {detail}")
        return bad

    def _replay(self, plan: Plan, files, indexes, pos: int):
        try:
            pipe = self._pipeline(plan, files, indexes, raw=True)
            for b in range(pos + self.prefetch + 2):
                outs = pipe.run()
                if b < pos:
                    continue
                for i in range(len(outs[0])):
                    info = bytes(np.array(outs[1][i])).decode()
                    shard, _, member = info.rsplit(":", 2)
                    key, ext = split_key(member)
                    sample = {ext: bytes(np.array(outs[0][i]))}
                    if len(outs) > 2:
                        sample[plan.spec.label] = bytes(np.array(outs[2][i]))
                    yield shard, key, sample
        except (RuntimeError, StopIteration):
            return  # the end of the data, or the reader itself failed: the scan decides

    def _scan(self, files):
        for shard in files:
            _, entries = self._tables[shard]
            out = self._excluded.get(shard, ())
            with open(shard, "rb") as f:
                for e in entries:
                    if e.key in out:
                        continue
                    sample = {}
                    for ext, (off, size) in e.members.items():
                        f.seek(off)
                        sample[ext] = f.read(size)
                    yield shard, e.key, sample

    @staticmethod
    def _check(spec: SampleSpec, samples, first_only: bool = False) -> list[BadSample]:
        found = []
        for shard, key, sample in samples:
            sample = {ext: data for ext, data in sample.items()
                      if ext in spec.image_exts or ext == spec.label}
            try:
                check_sample(spec, sample)
            except ValueError as e:
                found.append(BadSample(shard, key, str(e)))
                if first_only:
                    break
        return found

    # ---- what the base class asks for ----
    def _epoch_plan(self, epoch: int) -> Plan:
        part = part_of(self.rank, epoch, self.world)
        order = tuple(shard_order(len(self.train.shards), self.seed, epoch))
        return Plan(self.train, self.spec, order, part, self.world, shuffle=True,
                    seed=derive_seed(self.seed, epoch, part), flip=self.flip,
                    batch_size=self.batch_size, full_batches=True)

    def _stream(self, epoch: int, batch: int):
        while True:
            for b, x, y in self._run(self._epoch_plan(epoch), batch, self.batches_per_epoch):
                yield epoch, b, x, y
            epoch, batch = epoch + 1, 0

    def _read_ordered(self, shards: ShardSet, n: int):
        if not shards.shards or shards.shards[0] not in self._tables:
            self._prepare(shards)        # a split first read now (the probes' test split)
        size = max(1, min(n, VALIDATION_BATCH))
        plan = Plan(shards, SampleSpec.of(shards, self.spec.channels),
                    tuple(range(len(shards.shards))), 0, 1, shuffle=False, seed=self.seed,
                    flip=False, batch_size=size, full_batches=False)
        xs, ys, have = [], [], 0
        for _, x, y in self._run(plan, 0, -(-n // size)):
            xs.append(x.cpu())
            ys.append(None if y is None else y.cpu())
            have += len(x)
            if have >= n:
                break
        if not xs:
            raise DataError(f"{shards.source}: no usable samples for the validation batch")
        y = None if ys[0] is None else torch.cat(ys)[:n]
        return torch.cat(xs)[:n], y


def parse_classes(text: torch.Tensor, n_classes: int | None) -> torch.Tensor:
    """(B, L) ASCII class labels padded with zeros -> (B,) int64; _Anomaly if one is not a
    class index (the Python check then says which and why)."""
    pad = torch.zeros_like(text, dtype=torch.bool)
    for b in LABEL_PAD:
        pad |= text == b
    digits = text.long() - ord("0")
    ok = ((digits >= 0) & (digits <= 9)) | pad
    value = torch.zeros(len(text), dtype=torch.long)
    for j in range(text.shape[1]):
        value = torch.where(pad[:, j], value, value * 10 + digits[:, j])
    if not bool(ok.all()) or bool(pad.all(1).any()) \
            or (n_classes is not None and bool((value >= n_classes).any())):
        raise _Anomaly("a class label that is not a class index")
    return value
