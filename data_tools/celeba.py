"""CelebA (aligned & cropped faces) with its 40 binary attributes.

    img_align_celeba/<name>.jpg    178 x 218 JPEGs
    list_attr_celeba.txt           line 1: row count; line 2: the 40 attribute names;
                                   then "<name> v1 ... v40", each value 1 or -1
    list_eval_partition.txt        "<name> 0|1|2"  ->  train / val / test

Crop: the central `crop` x `crop` square (default 140: for a 178 x 218 image the box
left=19, top=39, right=159, bottom=179), which holds the aligned face from brow to chin, then
resized to `size` x `size` (64 or 128) and stored as JPEG (quality 95).
Attributes are stored per sample as the `.attr` member: 40 bytes, 1 where the file says 1 and 0
where it says -1, in the file's attribute order (kept in the manifest's `attributes`).
Tar keys are the rows' positions in list_attr_celeba.txt.
"""
from __future__ import annotations

import functools
from pathlib import Path

from .dataset import Dataset, Item, Sample, SourceError
from .images import JPG, encode, load_square

IMAGES = "img_align_celeba"
ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
PARTITIONS = {"0": "train", "1": "val", "2": "test"}
DEFAULT_CROP = 140


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise SourceError(f"{path}: missing")
    try:
        return path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: cannot read: {e}") from e


def read_attributes(path: Path) -> tuple[list[str], list[tuple[str, bytes]]]:
    """(attribute names, [(file name, one 0/1 byte per attribute)]) from list_attr_celeba.txt."""
    lines = _lines(path)
    if len(lines) < 2:
        raise SourceError(f"{path}: expected a count line and an attribute-name line")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise SourceError(f"{path}: line 1 should be the row count, found {lines[0]!r}") from None
    names = lines[1].split()
    rows = []
    for lineno, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 1 + len(names):
            raise SourceError(f"{path}: line {lineno}: expected a file name and {len(names)} "
                              f"attribute values, found {len(fields)} fields")
        bad = [v for v in fields[1:] if v not in ("1", "-1")]
        if bad:
            raise SourceError(f"{path}: line {lineno}: attribute values must be 1 or -1, "
                              f"found {bad[0]!r}")
        rows.append((fields[0], bytes(v == "1" for v in fields[1:])))
    if len(rows) != count:
        raise SourceError(f"{path}: line 1 says {count} rows, found {len(rows)}")
    return names, rows


def read_partition(path: Path) -> dict[str, str]:
    """{file name: split} from list_eval_partition.txt."""
    out = {}
    for lineno, line in enumerate(_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in PARTITIONS:
            raise SourceError(f"{path}: line {lineno}: expected '<file name> 0|1|2', "
                              f"found {line.strip()!r}")
        out[fields[0]] = PARTITIONS[fields[1]]
    return out


def _mismatch(a: set[str], b: set[str]) -> str:
    """First few names in a but not b, for error messages."""
    extra = sorted(a - b)
    return ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")


def encode_sample(payload: tuple[Path, bytes], size: int, crop: int) -> Sample:
    path, attributes = payload
    return Sample(encode(load_square(path, size, crop), JPG), attributes=attributes)


def load(src: str | Path, size: int = 64, crop: int = DEFAULT_CROP) -> Dataset:
    src = Path(src)
    if not src.is_dir():
        raise SourceError(f"{src}: not a directory (expected the CelebA root)")
    images = src / IMAGES
    if not images.is_dir():
        raise SourceError(f"{images}: missing (expected the aligned 178x218 JPEGs)")
    names, rows = read_attributes(src / ATTR_FILE)
    partition = read_partition(src / PARTITION_FILE)

    attr_files = {name for name, _ in rows}
    if len(attr_files) != len(rows):
        raise SourceError(f"{src / ATTR_FILE}: some file names appear more than once")
    if attr_files != set(partition):
        raise SourceError(
            f"{src / ATTR_FILE} and {src / PARTITION_FILE} list different images: "
            f"only in the attributes: {_mismatch(attr_files, set(partition)) or 'none'}; "
            f"only in the partition: {_mismatch(set(partition), attr_files) or 'none'}")
    on_disk = {p.name for p in images.iterdir()}
    if not attr_files <= on_disk:
        raise SourceError(f"{src / ATTR_FILE}: {len(attr_files - on_disk)} listed image(s) are "
                          f"not in {images}: {_mismatch(attr_files, on_disk)}")

    splits: dict[str, list[Item]] = {s: [] for s in PARTITIONS.values()}
    for key, (name, attributes) in enumerate(rows):
        splits[partition[name]].append(Item(key, (images / name, attributes)))
    return Dataset(name="celeba", image_size=size, channels=3, image_format=JPG,
                   splits={s: items for s, items in splits.items() if items},
                   encode=functools.partial(encode_sample, size=size, crop=crop),
                   attributes=names,
                   options={"source": "celeba", "src": str(src.resolve()), "size": size,
                            "crop": crop})
