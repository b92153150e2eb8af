"""Shard writing: WebDataset tar files plus the DALI index of each, written atomically.

We write the tar stream ourselves (headers from `tarfile.TarInfo.tobuf`) so we know each
member's data offset as we go and can emit the DALI index without re-reading the archive.

DALI index format, as written by `wds2idx` (shipped with nvidia-dali, `IndexCreator`):

    v1.2 <number of samples>
    <ext> <data offset> <size> <member name> [<ext> <data offset> <size> <member name> ...]
    ...

one line per sample (members grouped by key, in archive order), where `<data offset>` is the
byte offset of the member's data (its 512-byte header + 512) and `<ext>` is the member name
after the first dot of its basename. Only regular files are listed.

Determinism: member metadata is fixed (mtime 0, uid/gid 0, no user names, mode 0644), so the
same samples in the same order give byte-identical shards.

Atomicity: a shard is written as `<shard>.tmp` and its index as `<index>.tmp`; both are fsynced
and renamed only when the shard is finished (index first, so a visible shard always has its
index). A crash leaves only `*.tmp` files, which no reader globs as shards.
"""
from __future__ import annotations

import hashlib
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ali_dist.data.format import index_name, shard_name

TAR_BLOCK = 512
# GNU tar and Python's tarfile pad an archive to whole records of 20 blocks; we do the same so
# our shards look like any other tar.
TAR_RECORD = 20 * TAR_BLOCK
INDEX_VERSION = "v1.2"
TMP_SUFFIX = ".tmp"


def _padded(n: int) -> int:
    return -(-n // TAR_BLOCK) * TAR_BLOCK


def member_bytes(size: int) -> int:
    """Bytes a member of `size` data bytes occupies in the archive (header + padded data)."""
    return TAR_BLOCK + _padded(size)


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")


def _fsync_rename(tmp: Path, final: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


@dataclass(frozen=True)
class ShardRecord:
    """A finished shard, as the manifest lists it."""
    name: str       # shard file name, relative to the output directory
    index: str      # its DALI index file name
    count: int      # samples in the shard
    sha256: str     # of the shard file
    bytes: int      # size of the shard file

    def to_json(self) -> dict:
        return {"name": self.name, "index": self.index, "count": self.count,
                "sha256": self.sha256, "bytes": self.bytes}


class ShardFile:
    """One shard being written: samples go to `<shard>.tmp`, index lines are kept in memory."""

    def __init__(self, directory: Path, name: str):
        self.directory, self.name = directory, name
        self.tmp = directory / (name + TMP_SUFFIX)
        self.file = open(self.tmp, "wb")
        self.digest = hashlib.sha256()
        self.offset = 0
        self.index_lines: list[str] = []

    def _write(self, data: bytes) -> None:
        self.file.write(data)
        self.digest.update(data)
        self.offset += len(data)

    def add(self, key: str, members: list[tuple[str, bytes]]) -> None:
        """Append one sample: `members` are (extension, data) pairs stored as `<key>.<ext>`."""
        entries = []
        for ext, data in members:
            member = f"{key}.{ext}"
            self._write(_header(member, len(data)))
            entries.append(f"{ext} {self.offset} {len(data)} {member}")
            self._write(data)
            self._write(b"\0" * (_padded(len(data)) - len(data)))
        self.index_lines.append(" ".join(entries))

    @property
    def count(self) -> int:
        return len(self.index_lines)

    def finish(self) -> ShardRecord:
        # End of archive: two zero blocks, then padding to a whole record.
        end = self.offset + 2 * TAR_BLOCK
        self._write(b"\0" * (-(-end // TAR_RECORD) * TAR_RECORD - self.offset))
        self.file.close()
        idx = index_name(self.name)
        idx_tmp = self.directory / (idx + TMP_SUFFIX)
        idx_tmp.write_text(f"{INDEX_VERSION} {self.count}\n"
                           + "".join(line + "\n" for line in self.index_lines))
        _fsync_rename(idx_tmp, self.directory / idx)
        _fsync_rename(self.tmp, self.directory / self.name)
        return ShardRecord(self.name, idx, self.count, self.digest.hexdigest(), self.offset)

    def abort(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


class SplitWriter:
    """Writes one split's samples into shards `<split>-000000.tar`, ... and their indexes,
    starting a new shard before one would exceed `max_bytes` or hold more than `max_count`
    samples (a single sample larger than `max_bytes` still gets a shard of its own)."""

    def __init__(self, directory: Path, split: str, max_bytes: int, max_count: int):
        if max_bytes <= 0 or max_count <= 0:
            raise ValueError("shard size and sample count limits must be positive")
        self.directory, self.split = Path(directory), split
        self.max_bytes, self.max_count = max_bytes, max_count
        self.current: ShardFile | None = None
        self.records: list[ShardRecord] = []

    def add(self, key: str, members: list[tuple[str, bytes]]) -> None:
        need = sum(member_bytes(len(data)) for _, data in members)
        cur = self.current
        if cur is not None and (cur.count >= self.max_count
                                or cur.offset + need + 2 * TAR_BLOCK > self.max_bytes):
            self.records.append(cur.finish())
            cur = self.current = None
        if cur is None:
            cur = self.current = ShardFile(self.directory,
                                           shard_name(self.split, len(self.records)))
        cur.add(key, members)

    def close(self) -> list[ShardRecord]:
        if self.current is not None:
            self.records.append(self.current.finish())
            self.current = None
        return self.records

    def abort(self) -> None:
        if self.current is not None:
            self.current.abort()
            self.current = None

    def __enter__(self) -> "SplitWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
