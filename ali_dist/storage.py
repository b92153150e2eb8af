"""Run directories in Ray storage (a local path or any URI pyarrow.fs understands, such as
s3://bucket/prefix): whether a run exists, its newest checkpoint, the driver's run metadata."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.fs as pafs

RUN_META = "ali_dist_run.json"   # beside Ray's checkpoints: the MLflow run to resume into


def resolve(storage: str | None) -> str:
    """Default ./ali_runs; local paths made absolute (Ray requires it)."""
    s = storage or str(Path.cwd() / "ali_runs")
    return s if "://" in s else str(Path(s).expanduser().resolve())


def _fs(storage: str) -> tuple[pafs.FileSystem, str]:
    if "://" in storage:
        return pafs.FileSystem.from_uri(storage)
    return pafs.LocalFileSystem(), storage


def _join(storage: str, *parts: str) -> str:
    return "/".join([storage.rstrip("/"), *parts])


def run_exists(storage: str, name: str) -> bool:
    fs, root = _fs(storage)
    return fs.get_file_info(_join(root, name)).type == pafs.FileType.Directory


def checkpoints(storage: str, name: str) -> list[str]:
    """Every `checkpoint_<timestamp>` directory of a run (URI or path), newest first."""
    fs, root = _fs(storage)
    infos = fs.get_file_info(pafs.FileSelector(_join(root, name), allow_not_found=True))
    dirs = sorted((i.base_name for i in infos
                   if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_")),
                  reverse=True)   # Ray names them by time
    return [_join(storage, name, d) for d in dirs]


def latest_checkpoint(storage: str, name: str) -> str | None:
    """The newest checkpoint directory holding a state file (URI or path)."""
    fs, root = _fs(storage)
    for path in checkpoints(storage, name):  # skip one cut short by a crash
        d = path.rsplit("/", 1)[1]
        if fs.get_file_info(_join(root, name, d, "state.pt")).type == pafs.FileType.File:
            return path
    return None


def read_meta(storage: str, name: str) -> dict | None:
    fs, root = _fs(storage)
    path = _join(root, name, RUN_META)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return json.loads(f.read().decode())


def write_meta(storage: str, name: str, meta: dict) -> None:
    fs, root = _fs(storage)
    fs.create_dir(_join(root, name), recursive=True)
    with fs.open_output_stream(_join(root, name, RUN_META)) as f:
        f.write(json.dumps(meta).encode())
