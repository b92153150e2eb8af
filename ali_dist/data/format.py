"""The shard format: the one place that says how datasets are laid out on disk.

`data_tools` writes it, the loaders (DALI and webdataset) read it.

    <dir>/manifest.json                 counts, classes, image size, checksums: its schema
                                        and reader live in `data_tools/manifest.py`
    <dir>/<split>-000000.tar            WebDataset tar shards, split = train / val / test / extra
    <dir>/<split>-000000.idx            DALI's index for each shard (what `wds2idx` writes)

Each sample is a group of tar members sharing a key (`<key>.<ext>`):
    <key>.png or <key>.jpg   the image, already at the dataset's image size
    <key>.cls                class index as ASCII decimal text (WebDataset's convention), if any
    <key>.attr               binary attributes as raw bytes, one uint8 (0 or 1) per attribute,
                             in the manifest's `attributes` order (CelebA: 40)
"""
from __future__ import annotations

MANIFEST = "manifest.json"
FORMAT_VERSION = "ali-dist-shards/1"
IMAGE_EXTS = ("png", "jpg")
CLASS_EXT = "cls"
ATTR_EXT = "attr"
SPLITS = ("train", "val", "test", "extra")


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


def index_name(shard: str) -> str:
    """DALI index file beside a shard: train-000000.tar -> train-000000.idx."""
    return shard[:-4] + ".idx" if shard.endswith(".tar") else shard + ".idx"


def sample_key(index: int) -> str:
    return f"{index:08d}"
