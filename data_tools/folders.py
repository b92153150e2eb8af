"""Image folders: labelled by class folders (ImageNet / Tiny ImageNet style) or unlabelled.

Class folders (`imagefolder`):
    ROOT/<class>/**/<image>            ROOT itself is the train split, or, if ROOT/train exists,
    ROOT/train/<class>/**/<image>      ROOT/train, ROOT/val and ROOT/test are the splits.
    ROOT/val/<class>/**/<image>
  Images are found recursively under each class folder, which covers ImageNet
  (`<class>/*.JPEG`) and Tiny ImageNet (`<class>/images/*.JPEG`). Classes are the train split's
  folder names, sorted; index = position. Tiny ImageNet's val layout is recognised too:
    ROOT/val/val_annotations.txt       "<file> <class> <box...>" lines, images in ROOT/val/images/
  A split folder that holds only an `images/` folder and no annotations (Tiny ImageNet's test
  split) has no labels and is skipped.

Plain folder (`folder`): every image under ROOT, recursively, one unlabelled train split.

Both: each image is centre-cropped to its largest square, resized to `size` x `size`, and
stored as JPEG (quality 95). Tar keys are positions in the sorted file list of the split.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

from .dataset import Dataset, Item, Sample, SourceError
from .images import IMAGE_SUFFIXES, JPG, encode, is_image_file, load_square
from .splits import carve

SPLIT_DIRS = ("train", "val", "test")
TINY_VAL_ANNOTATIONS = "val_annotations.txt"
TINY_IMAGES = "images"


def _images_under(directory: Path) -> list[Path]:
    """Image files under `directory`, recursively, sorted by relative path (hidden ones
    skipped)."""
    return sorted((p for p in directory.rglob("*") if p.is_file() and is_image_file(p)
                   and not any(part.startswith(".") for part in p.relative_to(directory).parts)),
                  key=lambda p: p.relative_to(directory).as_posix())


def _class_dirs(directory: Path) -> list[Path]:
    return sorted((p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def _read_class_tree(directory: Path, classes: dict[str, int] | None
                     ) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names, [(image, class index)]) of a `<class>/**/<image>` tree. With `classes`
    given (a non-train split), its folders must be among them."""
    dirs = _class_dirs(directory)
    if not dirs:
        raise SourceError(f"{directory}: no class folders")
    names = [d.name for d in dirs]
    index = classes if classes is not None else {n: i for i, n in enumerate(names)}
    unknown = [n for n in names if n not in index]
    if unknown:
        raise SourceError(f"{directory}: class folder(s) not in the train split: "
                          f"{', '.join(unknown[:5])}")
    samples = []
    for d in dirs:
        files = _images_under(d)
        if not files:
            raise SourceError(f"{d}: class folder without images")
        samples += [(f, index[d.name]) for f in files]
    return names, samples


def _read_tiny_val(directory: Path, classes: dict[str, int]) -> list[tuple[Path, int]]:
    """Tiny ImageNet's val split: images/ plus val_annotations.txt."""
    annotations = directory / TINY_VAL_ANNOTATIONS
    samples = []
    for lineno, line in enumerate(annotations.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise SourceError(f"{annotations}: line {lineno}: expected '<file> <class> ...'")
        if fields[1] not in classes:
            raise SourceError(f"{annotations}: line {lineno}: class {fields[1]!r} is not a "
                              f"train class folder")
        path = directory / TINY_IMAGES / fields[0]
        if not path.is_file():
            raise SourceError(f"{annotations}: line {lineno}: {path} does not exist")
        samples.append((path, classes[fields[1]]))
    return sorted(samples, key=lambda s: s[0].name)


def _is_unlabelled(directory: Path) -> bool:
    return ([d.name for d in _class_dirs(directory)] == [TINY_IMAGES]
            and not (directory / TINY_VAL_ANNOTATIONS).exists())


def encode_sample(payload: tuple[Path, int | None], size: int) -> Sample:
    path, label = payload
    return Sample(encode(load_square(path, size), JPG), label)


def _dataset(name: str, src: Path, size: int, splits: dict, classes: list[str] | None,
             options: dict) -> Dataset:
    return Dataset(name=name, image_size=size, channels=3, image_format=JPG, splits=splits,
                   encode=functools.partial(encode_sample, size=size), classes=classes,
                   options={"source": name, "src": str(src.resolve()), "size": size, **options})


def _check_root(src: Path) -> None:
    if not src.is_dir():
        raise SourceError(f"{src}: not a directory")


def load_classes(src: str | Path, size: int, val: int = 0, seed: int = 0,
                 name: str = "imagefolder") -> Dataset:
    src = Path(src)
    _check_root(src)
    split_dirs = {s: src / s for s in SPLIT_DIRS if (src / s).is_dir()}
    if "train" not in split_dirs:
        split_dirs = {"train": src}
    names, train = _read_class_tree(split_dirs["train"], None)
    classes = {n: i for i, n in enumerate(names)}
    samples = {"train": train}
    for split, directory in split_dirs.items():
        if split == "train":
            continue
        if (directory / TINY_VAL_ANNOTATIONS).is_file():
            samples[split] = _read_tiny_val(directory, classes)
        elif _is_unlabelled(directory):
            print(f"{directory}: no labels (only {TINY_IMAGES}/); split skipped", file=sys.stderr)
        else:
            samples[split] = _read_class_tree(directory, classes)[1]
    splits = {s: [Item(i, p) for i, p in enumerate(pairs)] for s, pairs in samples.items()}
    if val:
        if "val" in splits:
            raise SourceError(f"{src}: has a val split already; --val would add a second")
        splits["train"], splits["val"] = carve(splits["train"], val, seed, f"{src} train")
    return _dataset(name, src, size, splits, names, {"val": val})


def load_plain(src: str | Path, size: int, val: int = 0, seed: int = 0,
               name: str = "folder") -> Dataset:
    src = Path(src)
    _check_root(src)
    files = _images_under(src)
    if not files:
        raise SourceError(f"{src}: no image files (looked for {', '.join(IMAGE_SUFFIXES)})")
    splits = {"train": [Item(i, (f, None)) for i, f in enumerate(files)]}
    if val:
        splits["train"], splits["val"] = carve(splits["train"], val, seed, f"{src}")
    return _dataset(name, src, size, splits, None, {"val": val})
