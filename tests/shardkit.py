"""Small real datasets for the loader tests: shards written by the plain webdataset library
(`webdataset.ShardWriter`), DALI indexes made by DALI's own `wds2idx`, and a manifest made by
`data_tools.manifest.build` (the schema's one writer). Plus ways to break them."""
from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ali_dist.data.format import index_name, sample_key, shard_name

REPO = Path(__file__).resolve().parent.parent
WDS2IDX = str(Path(sys.executable).with_name("wds2idx"))


@dataclass
class Split:
    """What was written for one split, in write order (= the order of an unshuffled read)."""
    shards: list[Path]
    keys: list[str]
    images: list[np.ndarray]            # as encoded, (H, W, C) uint8
    labels: list = field(default_factory=list)

    def expected(self, channels: int | None = None) -> torch.Tensor:
        """The images as the loaders should return them without resize: (N, C, H, W) in [0, 1]."""
        out = []
        for img in self.images:
            if channels == 1 and img.shape[2] == 3:
                img = np.asarray(Image.fromarray(img).convert("L"))[:, :, None]
            elif channels == 3 and img.shape[2] == 1:
                img = np.repeat(img, 3, axis=2)
            out.append(torch.from_numpy(img.transpose(2, 0, 1).copy()))
        return torch.stack(out).float() / 255


def random_image(rng: np.random.Generator, size: int, channels: int,
                 label: int | None = None) -> np.ndarray:
    """Noise (smoothed a little so JPEG round trips are close), with the class written into a
    4x4 corner block so a test can check that x and y stay aligned."""
    img = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
    img = ((img.astype(np.uint16) + np.roll(img, 1, axis=1)) // 2).astype(np.uint8)
    if label is not None:
        img[:4, :4] = 20 * label
    return img


def encode(img: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    pil = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
    if fmt == "jpg":
        pil.save(buf, format="JPEG", quality=95)
    else:
        pil.save(buf, format="PNG")
    return buf.getvalue()


def make_index(shard: Path) -> Path:
    idx = shard.with_name(index_name(shard.name))
    subprocess.run([WDS2IDX, str(shard), str(idx)], check=True, capture_output=True)
    return idx


def write(directory: Path, splits: dict[str, int], *, size: int = 32, channels: int = 3,
          fmt: str = "png", label: str | None = "cls", n_classes: int = 10, n_attr: int = 5,
          per_shard: int = 10, manifest: bool = True, index: bool = True, seed: int = 0,
          mutate: dict | None = None) -> dict[str, Split]:
    """Write `splits` ({"train": 40, "val": 10}) as shards of `per_shard` samples.
    `mutate` maps a global sample number to a function that edits its member dict before it is
    written (to make bad samples); the returned images are the unmutated ones."""
    import webdataset as wds
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out, number = {}, 0
    for split, n in splits.items():
        pattern = str(directory / f"{split}-%06d.tar")
        written = Split([], [], [], [])
        with wds.ShardWriter(pattern, maxcount=per_shard, verbose=0) as sink:
            for _ in range(n):
                cls = int(rng.integers(n_classes)) if label == "cls" else None
                img = random_image(rng, size, channels, cls)
                sample = {"__key__": sample_key(number), fmt: encode(img, fmt)}
                if label == "cls":
                    sample["cls"] = cls
                    written.labels.append(cls)
                elif label == "attr":
                    attrs = rng.integers(0, 2, n_attr).astype(np.uint8)
                    sample["attr"] = attrs.tobytes()
                    written.labels.append(attrs)
                if mutate and number in mutate:
                    sample = mutate[number](dict(sample))
                sink.write(sample)
                written.keys.append(sample_key(number))
                written.images.append(img)
                number += 1
        written.shards = [directory / shard_name(split, k) for k in range(-(-n // per_shard))]
        assert all(p.is_file() for p in written.shards)
        if index:
            for shard in written.shards:
                make_index(shard)
        out[split] = written
    if manifest:
        write_manifest(directory, out, size, channels, fmt, label, n_classes, n_attr, per_shard)
    return out


def write_manifest(directory: Path, splits: dict[str, Split], size: int, channels: int,
                   fmt: str, label: str | None, n_classes: int, n_attr: int,
                   per_shard: int) -> Path:
    from data_tools import manifest as mf
    from data_tools.dataset import Dataset
    from data_tools.writer import ShardRecord
    dataset = Dataset("synthetic", size, channels, fmt, splits={}, encode=None,
                      classes=[f"c{i}" for i in range(n_classes)] if label == "cls" else None,
                      attributes=[f"a{i}" for i in range(n_attr)] if label == "attr" else None)
    records = {}
    for split, written in splits.items():
        records[split] = []
        for k, shard in enumerate(written.shards):
            count = min(per_shard, len(written.keys) - k * per_shard)
            records[split].append(ShardRecord(shard.name, index_name(shard.name), count,
                                              mf.file_sha256(shard), shard.stat().st_size))
    return mf.write(directory, mf.build(dataset, records, {"source": "shardkit"}))


# ---- breaking things ---------------------------------------------------------------------------

def truncate_in(shard: Path, key: str) -> None:
    """Cut the shard in the middle of sample `key`'s image data (as a failed copy would)."""
    import tarfile
    with tarfile.open(shard) as tar:
        member = next(m for m in tar if m.name.startswith(key + ".")
                      and m.name.split(".", 1)[1] in ("png", "jpg"))
    with open(shard, "r+b") as f:
        f.truncate(member.offset_data + member.size // 2)


def corrupt_jpeg(sample: dict) -> dict:
    """Keep the JPEG header, zero the entropy-coded data: decoders reject it."""
    data = bytearray(sample["jpg"])
    data[200:] = b"\0" * (len(data) - 200)
    sample["jpg"] = bytes(data)
    return sample


def drop_label(sample: dict) -> dict:
    sample.pop("cls", None)
    return sample


def resized(size: int, fmt: str = "png"):
    def change(sample: dict) -> dict:
        img = np.asarray(Image.open(io.BytesIO(sample[fmt])))
        img = img[:, :, None] if img.ndim == 2 else img
        sample[fmt] = encode(np.asarray(Image.fromarray(img.squeeze()).resize((size, size)))
                             .reshape(size, size, -1), fmt)
        return sample
    return change


def loader(kind: str, train, val=None, **kw):
    """A loader built directly (no Config): kind "dali" or "webdataset"."""
    from ali_dist.data.shards import ShardSet
    if kind == "dali":
        from ali_dist.data.dali import DaliLoader as cls
    else:
        from ali_dist.data.wds import WdsLoader as cls
    args = dict(image_size=32, channels=3, batch_size=8, threads=1, device="cpu",
                index_dir=None)
    args.update(kw)
    assert isinstance(train, ShardSet)
    return cls(train, val, **args)
