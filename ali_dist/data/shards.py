"""Where the samples are: a `--data` / `--val-data` source resolved into a `ShardSet`.

A source is one of
    <dir>/manifest.json, or <dir> holding one   a converted dataset (`format.py`): one split's
                                                shards, counts, image size and label names
    <dir> without a manifest                    its `<split>-*.tar` shards; for training, every
                                                `*.tar` when there are none of those
    a shard pattern                             `data/train-{000000..000003}.tar` (brace
                                                expansion), shell globs (`data/*.tar`)
    a URL or URL pattern                        http(s)://, s3://, gs://, pipe:<command>, or a
                                                remote manifest.json (webdataset loader only)

What the manifest does not say is read from the data itself: the image size, channels and
label member from the first sample, and the sample counts from each shard's DALI index (or,
without one, by scanning the tar headers; remote shards without a manifest are streamed once).

Everything here is cheap and runs before a pipeline is built, so that a wrong path, an empty
pattern, a missing shard or a truncated file is reported up front, by name.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import os
import re
import tarfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .format import (ATTR_EXT, CLASS_EXT, FORMAT_VERSION, IMAGE_EXTS, MANIFEST, SPLITS,
                     index_name)

URL_RE = re.compile(r"^(pipe:|[a-z][a-z0-9+.-]*://)", re.IGNORECASE)
GLOB_CHARS = re.compile(r"[*?\[]")
TRAIN, VAL = "train", "val"
# What a shard name from a manifest may hold, and a URL that becomes part of a shell command
# (`pipe:aws s3 cp <url> -`): letters, digits and ._-+=,@% (and / between directories). A name
# with anything a shell would interpret is refused, not quoted: it is not a shard's name.
SAFE_NAME = re.compile(r"[A-Za-z0-9._+=,@%-]+(/[A-Za-z0-9._+=,@%-]+)*")
SHELL_SCHEMES = ("s3://",)
SAFE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[A-Za-z0-9._+=,@%:/-]+")


class DataError(ValueError):
    """Bad input data. The message names the file (and sample key) and says what is wrong."""


def check_name(name, where: str, what: str) -> str:
    """A manifest's shard (or index) entry: a relative path of safe characters, inside the
    dataset's directory."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) \
            or ".." in name.split("/"):
        bad = sorted(set(re.sub(r"[A-Za-z0-9._+=,@%/-]", "", name))) \
            if isinstance(name, str) else [type(name).__name__]
        why = (f"contains {''.join(bad)!r}" if bad else "is not a relative path inside the "
               "dataset's directory")
        raise DataError(f"{where}: {what} {name!r} {why}; shard names must be plain file "
                        f"names (letters, digits and ._-+=,@%, / between directories), since "
                        f"remote shards are opened through shell commands")
    return name


def check_url(url: str, where: str) -> str:
    """A shard URL that becomes part of a shell command (see `_wds_url`): safe characters
    only. Others pass: webdataset hands http(s) and gs URLs to curl and gsutil as arguments,
    and a `pipe:` source is the user's own command, typed as such."""
    if not url.startswith(SHELL_SCHEMES):
        return url
    if not SAFE_URL.fullmatch(url):
        bad = sorted(set(re.sub(r"[A-Za-z0-9._+=,@%:/-]", "", url)))
        raise DataError(f"{where}: shard URL {url!r} contains {''.join(bad)!r}; shard URLs "
                        f"must hold only letters, digits and ._-+=,@%:/, since remote shards "
                        f"are opened through shell commands")
    return url


def is_url(source: str) -> bool:
    return bool(URL_RE.match(source)) and not source.startswith("file://")


def split_key(name: str) -> tuple[str, str]:
    """A tar member name -> (sample key, extension): the extension starts at the first dot of
    the base name, as webdataset and DALI's `wds2idx` both group members."""
    slash = name.rfind("/") + 1
    dot = name.find(".", slash)
    return (name, "") if dot < 0 else (name[:dot], name[dot + 1:])


# ---- sample tables: what a shard holds, from its DALI index or its tar headers ---------------

@dataclass(frozen=True)
class Entry:
    """One sample of a shard: its key, its members {ext: (data offset, size)}, and its line in
    the shard's DALI index (None when the table came from a tar scan)."""
    key: str
    members: dict
    line: str | None = None

    @property
    def end(self) -> int:
        """The byte just past the sample's last member data."""
        return max(off + size for off, size in self.members.values())


def read_index(path: str) -> list[Entry]:
    """Parse a DALI webdataset index (`v1.2 <count>`, then per sample `<ext> <offset> <size>
    <member name>` repeated for each member)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise DataError(f"{path}: cannot read the index: {e.strerror}") from None
    head = lines[0].split() if lines else []
    if len(head) != 2 or not head[1].isdigit():
        raise DataError(f"{path}: not a DALI webdataset index (first line {lines[:1]})")
    entries = []
    for no, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if not fields or len(fields) % 4:
            raise DataError(f"{path}: malformed index line {no}: {line!r}")
        members = {}
        for i in range(0, len(fields), 4):
            ext, off, size, name = fields[i:i + 4]
            members[ext] = (int(off), int(size))
        entries.append(Entry(split_key(fields[3])[0], members, line))
    if len(entries) != int(head[1]):
        raise DataError(f"{path}: the index announces {head[1]} samples but lists "
                        f"{len(entries)}")
    return entries


def scan_tar(path: str, partial: bool = False) -> list[Entry]:
    """The sample table of a local tar from its headers alone (seeks past member data). An
    unreadable tar raises DataError, or with `partial` gives the samples before the damage."""
    entries: list[Entry] = []
    try:
        with tarfile.open(path, "r:") as tar:
            for m in tar:
                if not m.isreg():
                    continue
                key, ext = split_key(m.name)
                if not ext:
                    continue
                if entries and entries[-1].key == key:
                    entries[-1].members[ext] = (m.offset_data, m.size)
                else:
                    entries.append(Entry(key, {ext: (m.offset_data, m.size)}))
    except (tarfile.TarError, OSError) as e:
        if partial:
            return entries
        where = f" after sample {entries[-1].key!r}" if entries else ""
        raise DataError(f"{path}: not a readable tar file{where}: {e}") from None
    return entries


def truncated(path: str, entries: list[Entry]) -> list[Entry]:
    """The samples whose data runs past the end of the file (a cut-off download or copy)."""
    size = os.path.getsize(path)
    return [e for e in entries if e.end > size]


def locate_truncation(path: str) -> str | None:
    """The key of the sample a truncated local tar ends in, or None if no member is cut."""
    try:
        cut = truncated(path, scan_tar(path, partial=True))
    except OSError:
        return None
    return cut[0].key if cut else None


def write_index(tar: str, idx: str) -> None:
    """Write a DALI index for `tar` with DALI's own `wds2idx` (atomically: several workers on
    one machine may race to make the same index)."""
    from wds2idx import IndexCreator  # ships with nvidia-dali
    tmp = f"{idx}.{os.getpid()}.tmp"
    try:
        with IndexCreator(tar, tmp, verbose=False) as creator:
            creator.create_index()
        os.replace(tmp, idx)
    except ValueError as e:  # wds2idx: "Webdataset Tar File empty"
        raise DataError(f"{tar}: no samples to index ({e})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def index_cache_path(tar: str, cache_dir: str) -> str:
    """Where to put a generated index when the shard's directory is read-only: named by the
    shard's path, size and modification time, so a changed shard gets a new index."""
    st = os.stat(tar)
    tag = hashlib.sha1(f"{os.path.abspath(tar)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return os.path.join(cache_dir, f"{Path(tar).stem}-{tag.hexdigest()[:16]}.idx")


# ---- the resolved source ---------------------------------------------------------------------

@dataclass
class ShardSet:
    """One split of a dataset: everything a loader needs to know before it reads a sample."""
    source: str                       # what the user gave
    shards: list[str]                 # local paths or URLs, in the dataset's order
    counts: list[int]                 # samples per shard
    image_hw: tuple[int, int]         # (height, width) every image must decode to
    channels: int                     # 1 or 3, as stored
    image_exts: tuple[str, ...]       # accepted image members
    label: str | None                 # CLASS_EXT, ATTR_EXT or None: the member that becomes y
    classes: list[str] | None = None
    attributes: list[str] | None = None
    n_attributes: int | None = None
    manifest: str | None = None       # where the metadata came from, if from a manifest
    indexes: list[str | None] = field(default_factory=list)  # DALI index per shard, if any
    sizes: list[int | None] = field(default_factory=list)    # manifest byte size per shard
    splits: tuple[str, ...] = ()      # the manifest's splits

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def local(self) -> bool:
        return not any(is_url(s) for s in self.shards)

    def describe(self) -> str:
        return (f"{self.source}: {len(self.shards)} shard(s), {self.total} samples, "
                f"{self.image_hw[0]}x{self.image_hw[1]} px, {self.channels} channel(s)")


def resolve(source: str, split: str = TRAIN, count: bool = True) -> ShardSet:
    """Resolve a source into one split's ShardSet, checking what is cheap to check."""
    if not source:
        raise DataError("no data source given")
    source = str(source)
    if source.startswith("file://"):
        source = source[len("file://"):]
    if is_url(source):
        if source.endswith(MANIFEST):
            return _from_manifest(source, _read_remote_manifest(source), split)
        return _from_shards(source, [check_url(u, source) for u in expand(source)], count)
    path = Path(source).expanduser()
    if path.name == MANIFEST or (path.is_dir() and (path / MANIFEST).is_file()):
        mpath = path if path.name == MANIFEST else path / MANIFEST
        if not mpath.is_file():
            raise DataError(f"{mpath}: no such manifest")
        return _from_manifest(str(mpath), _parse_manifest(_read_text(mpath), str(mpath)), split)
    if path.is_dir():
        shards = sorted(glob.glob(str(path / f"{glob.escape(split)}-*.tar")))
        if not shards and split == TRAIN:  # plain shards: all but other splits' ones
            shards = [s for s in sorted(glob.glob(str(path / "*.tar")))
                      if not os.path.basename(s).startswith(tuple(f"{x}-" for x in SPLITS))]
        if not shards:
            what = f"{split}-*.tar" + (" or *.tar" if split == TRAIN else "")
            raise DataError(f"{path}: directory holds no {MANIFEST} and no {what} shards")
        return _from_shards(source, shards, count)
    return _from_shards(source, expand(source), count)


def validation_set(train: ShardSet, val_source: str | None) -> ShardSet | None:
    """The held-out split: `--val-data` if given (its manifest's `val` split, else its shards),
    else the training manifest's `val` split, else a directory's `val-*.tar`; None if none."""
    if val_source:
        return resolve(val_source, VAL)
    if train.manifest:
        return resolve(train.manifest, VAL) if VAL in train.splits else None
    if len(train.shards) and not is_url(train.shards[0]):
        directory = os.path.dirname(train.shards[0])
        if glob.glob(os.path.join(glob.escape(directory), f"{VAL}-*.tar")) \
                and not any(os.path.basename(s).startswith(f"{VAL}-") for s in train.shards):
            return resolve(directory, VAL)
    return None


def expand(pattern: str) -> list[str]:
    """Brace-expand a pattern (`train-{000000..000003}.tar`), then glob local parts; every
    local name must exist."""
    import braceexpand
    names = list(braceexpand.braceexpand(pattern))
    if is_url(pattern):
        return names
    out, missing = [], []
    for name in names:
        name = os.path.expanduser(name)
        if GLOB_CHARS.search(name):
            hits = sorted(glob.glob(name))
            if not hits:
                raise DataError(f"{name}: pattern matches no shard"
                                + ("" if os.path.isdir(os.path.dirname(name) or ".")
                                   else f" (directory {os.path.dirname(name)} does not exist)"))
            out += hits
        elif not os.path.exists(name):
            missing.append(name)
        elif os.path.isdir(name):
            raise DataError(f"{name}: a directory inside a shard pattern; give the directory "
                            f"alone, or a pattern of .tar files")
        else:
            out.append(name)
    if missing:
        more = f"and {len(missing) - 1} more of the {len(names)} names " if len(missing) > 1 else ""
        raise DataError(f"{missing[0]}: no such file or directory"
                        + (f" ({more}from pattern {pattern})" if len(names) > 1 else ""))
    if not out:
        raise DataError(f"{pattern}: matches no shard")
    return out


# ---- manifests -------------------------------------------------------------------------------

def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror}") from None


def _read_remote_manifest(url: str) -> dict:
    from webdataset.gopen import gopen
    try:
        with gopen(_wds_url(url)) as f:
            text = f.read().decode()
    except Exception as e:  # noqa: BLE001 - any transport error: say which URL
        raise DataError(f"{url}: cannot read the manifest: {e}") from None
    return _parse_manifest(text, url)


def _parse_manifest(text: str, where: str) -> dict:
    try:
        manifest = json.loads(text)
    except ValueError as e:
        raise DataError(f"{where}: not valid JSON: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise DataError(f"{where}: not a shard manifest of format {FORMAT_VERSION!r} "
                        f"(format {found!r})")
    for key in ("image_size", "channels", "image_format", "splits"):
        if key not in manifest:
            raise DataError(f"{where}: manifest lacks {key!r}")
    if manifest["image_format"] not in IMAGE_EXTS:
        raise DataError(f"{where}: image_format {manifest['image_format']!r} is not one of "
                        f"{IMAGE_EXTS}")
    return manifest


def _from_manifest(where: str, manifest: dict, split: str) -> ShardSet:
    info = manifest["splits"].get(split)
    if not info or not info.get("shards"):
        raise DataError(f"{where}: the manifest has no split {split!r} (it has "
                        f"{', '.join(manifest['splits']) or 'none'})")
    remote = is_url(where)
    # names are checked before any path, URL or command is made of them; a checked name is
    # relative, so a remote one joins its manifest's directory by plain concatenation (which,
    # unlike urljoin, also works for s3:// and gs://)
    base = where.rsplit("/", 1)[0] + "/" if remote else os.path.dirname(os.path.abspath(where))
    join = (lambda name: base + name) if remote else (lambda name: os.path.join(base, name))
    shards, counts, indexes, sizes = [], [], [], []
    for s in info["shards"]:
        if not isinstance(s, dict) or "name" not in s:
            raise DataError(f"{where}: split {split!r} lists a shard without a name: {s!r}")
        name = check_name(s["name"], where, f"shard entry of split {split!r}")
        shards.append(join(name))
        counts.append(int(s["count"]))
        index = check_name(s.get("index") or index_name(name), where, f"index of shard {name!r}")
        indexes.append(None if remote else join(index))
        sizes.append(s.get("bytes"))
    if sum(counts) != int(info.get("count", sum(counts))):
        raise DataError(f"{where}: split {split!r} says {info['count']} samples but its shards "
                        f"add up to {sum(counts)}")
    if not remote:
        for path in shards:
            if not os.path.isfile(path):
                raise DataError(f"{path}: listed in {where} but missing")
    classes, attributes = manifest.get("classes"), manifest.get("attributes")
    size = int(manifest["image_size"])
    return ShardSet(source=where, shards=shards, counts=counts, image_hw=(size, size),
                    channels=int(manifest["channels"]),
                    image_exts=(manifest["image_format"],),
                    label=CLASS_EXT if classes else ATTR_EXT if attributes else None,
                    classes=classes, attributes=attributes,
                    n_attributes=len(attributes) if attributes else None,
                    manifest=where, indexes=indexes, sizes=sizes,
                    splits=tuple(manifest["splits"]))


# ---- shards without a manifest ---------------------------------------------------------------

def _from_shards(source: str, shards: list[str], count: bool) -> ShardSet:
    first = _first_sample(shards[0])
    image_ext = next((e for e in IMAGE_EXTS if e in first), None)
    if image_ext is None:
        members = sorted(k for k in first if not k.startswith("_"))
        raise DataError(f"{shards[0]}: first sample {first['__key__']!r} has no image member "
                        f"({'/'.join(IMAGE_EXTS)}); it has {members}")
    from PIL import Image
    try:
        img = Image.open(io.BytesIO(first[image_ext]))
        hw, grey = (img.height, img.width), img.getbands()[0] in ("L", "I", "F", "1")
    except Exception as e:  # noqa: BLE001 - PIL raises several types for bad data
        raise DataError(f"{shards[0]}: sample {first['__key__']!r}: image does not decode: {e}") \
            from None
    label = CLASS_EXT if CLASS_EXT in first else ATTR_EXT if ATTR_EXT in first else None
    indexes = [None] * len(shards)
    if not is_url(shards[0]):
        indexes = [index_name(s) if os.path.isfile(index_name(s)) else None for s in shards]
    counts = _count(shards, indexes) if count else [0] * len(shards)
    return ShardSet(source=source, shards=shards, counts=counts, image_hw=hw,
                    channels=1 if grey else 3,
                    image_exts=IMAGE_EXTS, label=label,
                    n_attributes=len(first[ATTR_EXT]) if label == ATTR_EXT else None,
                    indexes=indexes, sizes=[None] * len(shards))


def _first_sample(url: str) -> dict:
    """The members of the first sample of a shard (local or remote), read by streaming."""
    sample: dict = {}
    try:
        with _opened(url) as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for m in tar:
                if not m.isreg():
                    continue
                key, ext = split_key(m.name)
                if sample and key != sample["__key__"]:
                    break
                sample["__key__"] = key
                sample[ext.lower()] = tar.extractfile(m).read()
    except (tarfile.TarError, OSError) as e:
        if not sample:
            raise DataError(f"{url}: not a readable tar file: {e}") from None
    except Exception as e:  # noqa: BLE001 - transport errors of remote streams
        if not sample:
            raise DataError(f"{url}: cannot read: {e}") from None
    if not sample:
        raise DataError(f"{url}: holds no samples")
    return sample


def _count(shards: list[str], indexes: list[str | None]) -> list[int]:
    if is_url(shards[0]):
        warnings.warn(f"{shards[0]}...: remote shards without a manifest: counting samples "
                      f"by streaming all {len(shards)} shard(s) once; a manifest.json saves this")
        return [_stream_count(u) for u in shards]
    # A truncated shard counts its complete samples; the loader reports the cut one.
    return [len(read_index(i)) if i else _complete(s) for s, i in zip(shards, indexes)]


def _complete(path: str) -> int:
    entries = scan_tar(path, partial=True)
    return len(entries) - len(truncated(path, entries))


def _stream_count(url: str) -> int:
    keys = 0
    last = None
    try:
        with _opened(url) as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for m in tar:
                key = split_key(m.name)[0]
                if m.isreg() and key != last:
                    keys, last = keys + 1, key
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{url}: cannot read while counting samples: {e}") from None
    return keys


@contextlib.contextmanager
def _opened(url: str):
    """A byte stream of a local file or (through webdataset's gopen) a URL or pipe."""
    if not is_url(url):
        with open(url, "rb") as f:
            yield f
        return
    from webdataset.gopen import gopen
    stream = gopen(_wds_url(url))
    try:
        yield stream
    finally:
        try:
            stream.close()
        except Exception:  # noqa: BLE001 - a pipe closed early exits non-zero: expected
            pass


def _wds_url(url: str) -> str:
    """webdataset opens http(s) with curl and `pipe:` with a shell; it has no s3 handler, so
    s3:// goes through the AWS CLI (fsspec users: `pipe:` any command you like)."""
    if url.startswith("s3://"):
        return f"pipe:aws s3 cp {check_url(url, url)} -"
    return url


def wds_urls(shards: list[str]) -> list[str]:
    return [_wds_url(u) for u in shards]
