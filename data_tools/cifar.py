"""CIFAR-10 from the `cifar-10-batches-py` directory (the "python version" download).

    data_batch_1 .. data_batch_5   pickled dicts: "data" uint8 N x 3072 (channel-major: 1024 R,
    test_batch                     1024 G, 1024 B, each row-major 32x32), "labels" list of N ints
    batches.meta                   pickled dict: "label_names" (10 class names)

The files were pickled by Python 2: they are read with encoding="latin1" (which keeps numpy's
byte buffers intact) and dict keys are accepted as str or bytes.
Splits: train (the data batches, in file order), test (test_batch), and optionally val carved
from train. Images stay 32x32, stored as PNG (lossless).
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np

from .dataset import Dataset, Item, Sample, SourceError
from .images import PNG, encode_array
from .splits import carve

SIDE = 32
ROW = 3 * SIDE * SIDE
TRAIN_BATCH = re.compile(r"data_batch_(\d+)")


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise SourceError(f"{path}: missing (expected a CIFAR-10 python-version batch file)")
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="latin1")
    except Exception as e:          # a truncated or foreign file can raise almost anything
        raise SourceError(f"{path}: not a readable pickle: {type(e).__name__}: {e}") from e
    if not isinstance(obj, dict):
        raise SourceError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _require(path: Path, obj: dict, keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in obj]
    if missing:
        raise SourceError(f"{path}: missing key(s) {missing}; found {sorted(map(str, obj))}")


def _read_batch(path: Path, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    obj = _unpickle(path)
    _require(path, obj, ("data", "labels"))
    data, labels = np.asarray(obj["data"]), np.asarray(obj["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW:
        raise SourceError(f"{path}: 'data' must be uint8 N x {ROW}, found {data.dtype} "
                          f"{'x'.join(map(str, data.shape))}")
    if labels.shape != (len(data),):
        raise SourceError(f"{path}: {len(data)} images but {labels.size} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise SourceError(f"{path}: labels must lie in 0..{n_classes - 1}, found "
                          f"{labels.min()}..{labels.max()}")
    return data, labels.astype(np.int64)


def _train_files(src: Path) -> list[Path]:
    numbers = sorted(int(m.group(1)) for p in src.iterdir()
                     if (m := TRAIN_BATCH.fullmatch(p.name)))
    if not numbers:
        raise SourceError(f"{src}: no data_batch_<n> files (is this cifar-10-batches-py?)")
    expected = list(range(1, len(numbers) + 1))
    if numbers != expected:
        missing = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
        raise SourceError(f"{src}: data_batch_{missing[0]} is missing "
                          f"(found data_batch_{numbers})")
    return [src / f"data_batch_{n}" for n in numbers]


def encode_sample(payload: tuple[np.ndarray, int]) -> Sample:
    row, label = payload
    return Sample(encode_array(row.reshape(3, SIDE, SIDE).transpose(1, 2, 0), PNG), int(label))


def _items(data: np.ndarray, labels: np.ndarray) -> list[Item]:
    return [Item(i, (data[i], int(labels[i]))) for i in range(len(data))]


def load(src: str | Path, val: int = 0, seed: int = 0) -> Dataset:
    src = Path(src)
    if not src.is_dir():
        raise SourceError(f"{src}: not a directory (expected cifar-10-batches-py)")
    meta_path = src / "batches.meta"
    meta = _unpickle(meta_path)
    _require(meta_path, meta, ("label_names",))
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta["label_names"]]

    batches = [_read_batch(p, len(classes)) for p in _train_files(src)]
    train = _items(np.concatenate([d for d, _ in batches]), np.concatenate([y for _, y in batches]))
    splits = {"train": train, "test": _items(*_read_batch(src / "test_batch", len(classes)))}
    if val:
        splits["train"], splits["val"] = carve(train, val, seed, f"{src} train")
    return Dataset(name="cifar10", image_size=SIDE, channels=3, image_format=PNG,
                   splits=splits, encode=encode_sample, classes=classes,
                   options={"source": "cifar10", "src": str(src.resolve()), "val": val})
