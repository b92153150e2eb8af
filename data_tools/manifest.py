"""The manifest: the last file a conversion writes, so its presence marks a complete output.

    {
      "format": "ali-dist-shards/1",          # ali_dist.data.format.FORMAT_VERSION
      "dataset": "cifar10",
      "image_size": 32,                        # images are image_size x image_size
      "channels": 3,                           # 1 (grayscale) or 3 (RGB)
      "image_format": "png",                   # member extension: png or jpg
      "classes": ["airplane", ...] | null,     # index = the .cls value
      "attributes": ["5_o_Clock_Shadow", ...] | null,   # order of the .attr bytes
      "splits": {
        "train": {"count": 50000,
                  "shards": [{"name": "train-000000.tar", "index": "train-000000.idx",
                              "count": 10000, "sha256": "...", "bytes": 27340800}, ...]},
        ...
      },
      "conversion": {...}                      # the parameters it was made with (re-run check)
    }

Shard and index names are relative to the manifest's directory. The manifest holds no
timestamps, so an identical conversion writes an identical manifest.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ali_dist.data.format import FORMAT_VERSION, MANIFEST

from .dataset import Dataset
from .writer import ShardRecord

HASH_CHUNK = 1 << 20


def build(dataset: Dataset, shards: dict[str, list[ShardRecord]],
          conversion: dict[str, Any]) -> dict:
    return {
        "format": FORMAT_VERSION,
        "dataset": dataset.name,
        "image_size": dataset.image_size,
        "channels": dataset.channels,
        "image_format": dataset.image_format,
        "classes": dataset.classes,
        "attributes": dataset.attributes,
        "splits": {split: {"count": sum(r.count for r in records),
                           "shards": [r.to_json() for r in records]}
                   for split, records in shards.items()},
        "conversion": conversion,
    }


def write(directory: Path, manifest: dict) -> Path:
    """Write `manifest.json` atomically (temp file, fsync, rename)."""
    path = Path(directory) / MANIFEST
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read(directory: Path) -> dict | None:
    """The manifest in `directory`, or None if it is missing, unreadable or of another format."""
    try:
        manifest = json.loads((Path(directory) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        return None
    return manifest


def problems(directory: Path, manifest: dict, checksums: bool = False) -> list[str]:
    """What is wrong with the files a manifest lists: missing shards or indexes, wrong sizes,
    and (with `checksums`, which reads every shard) wrong SHA-256. Empty when all is well."""
    directory, found = Path(directory), []
    for split, info in manifest.get("splits", {}).items():
        for shard in info.get("shards", []):
            path, idx = directory / shard["name"], directory / shard["index"]
            if not path.is_file():
                found.append(f"{path}: missing")
                continue
            if not idx.is_file():
                found.append(f"{idx}: missing")
            if path.stat().st_size != shard["bytes"]:
                found.append(f"{path}: {path.stat().st_size} bytes, manifest says "
                             f"{shard['bytes']}")
            elif checksums and file_sha256(path) != shard["sha256"]:
                found.append(f"{path}: SHA-256 differs from the manifest")
    return found


def is_complete(directory: Path, conversion: dict[str, Any] | None = None) -> bool:
    """True if `directory` holds a finished conversion (made with `conversion`, if given) whose
    files are all present with their recorded sizes. Cheap: reads no shard contents."""
    manifest = read(directory)
    if manifest is None:
        return False
    if conversion is not None and manifest.get("conversion") != conversion:
        return False
    return not problems(directory, manifest)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
