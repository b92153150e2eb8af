"""SVHN (cropped digits) from the `*_32x32.mat` files.

    train_32x32.mat, test_32x32.mat, extra_32x32.mat   MATLAB files: "X" uint8 32x32x3xN,
                                                       "y" Nx1 labels 1..10, where 10 is digit 0

Whichever of the three files are present become the splits train / test / extra (and val, when
carved from train). Label 10 is stored as class 0, so class index == digit. PNG, 32x32.
Note: scipy loads a whole file into memory (extra_32x32.mat: about 1.6 GB).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from .dataset import Dataset, Item, Sample, SourceError
from .images import PNG, encode_array
from .splits import carve

SIDE = 32
FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}
CLASSES = [str(d) for d in range(10)]


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:          # scipy raises several types for foreign/truncated files
        raise SourceError(f"{path}: not a readable .mat file: {type(e).__name__}: {e}") from e
    missing = [k for k in ("X", "y") if k not in mat]
    if missing:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise SourceError(f"{path}: missing variable(s) {missing}; found {found}")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (SIDE, SIDE, 3):
        raise SourceError(f"{path}: 'X' must be uint8 32x32x3xN, found {x.dtype} "
                          f"{'x'.join(map(str, x.shape))}")
    if len(y) != x.shape[3]:
        raise SourceError(f"{path}: {x.shape[3]} images but {len(y)} labels in 'y'")
    if len(y) and (y.min() < 1 or y.max() > 10):
        raise SourceError(f"{path}: labels must lie in 1..10 (10 = digit 0), found "
                          f"{y.min()}..{y.max()}")
    return x, (y % 10).astype(np.int64)


def encode_sample(payload: tuple[np.ndarray, int]) -> Sample:
    pixels, label = payload
    return Sample(encode_array(pixels, PNG), int(label))


def load(src: str | Path, val: int = 0, seed: int = 0) -> Dataset:
    src = Path(src)
    if not src.is_dir():
        raise SourceError(f"{src}: not a directory (expected one holding *_32x32.mat files)")
    splits = {}
    for split, name in FILES.items():
        if (src / name).is_file():
            x, y = _read(src / name)
            splits[split] = [Item(i, (x[:, :, :, i], int(y[i]))) for i in range(len(y))]
    if not splits:
        raise SourceError(f"{src}: none of {sorted(FILES.values())} found")
    if val:
        if "train" not in splits:
            raise SourceError(f"{src}: --val needs {FILES['train']}")
        splits["train"], splits["val"] = carve(splits["train"], val, seed, f"{src} train")
    return Dataset(name="svhn", image_size=SIDE, channels=3, image_format=PNG, splits=splits,
                   encode=encode_sample, classes=CLASSES,
                   options={"source": "svhn", "src": str(src.resolve()), "val": val,
                            "files": sorted(FILES[s] for s in splits if s in FILES)})
