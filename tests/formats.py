"""Test helpers: write tiny datasets in their real on-disk formats, and read shards back with
the plain `webdataset` library and with a DALI CPU pipeline."""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"]


# ---- sources -------------------------------------------------------------------------------

def write_cifar(root: Path, batch_sizes: list[int], test_size: int,
                rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A cifar-10-batches-py directory; returns {"train": (data, labels), "test": ...} with data
    N x 3072 uint8 in the files' channel-major layout. Like the real (Python 2) files, the meta
    file and test_batch have bytes keys and names; the train batches use str keys."""
    root.mkdir(parents=True)
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CIFAR_CLASSES], b"num_vis": 3072}, f)

    def batch(path: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n)
        content = {"data": data, "labels": labels.tolist(), "batch_label": path.name}
        if path.name == "test_batch":
            content = {k.encode(): v for k, v in content.items()}
        with open(path, "wb") as f:
            pickle.dump(content, f)
        return data, labels

    train = [batch(root / f"data_batch_{i + 1}", n) for i, n in enumerate(batch_sizes)]
    return {"train": (np.concatenate([d for d, _ in train]),
                      np.concatenate([y for _, y in train])),
            "test": batch(root / "test_batch", test_size)}


def write_svhn(root: Path, sizes: dict[str, int],
               rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`<split>_32x32.mat` files; returns {split: (N x 32 x 32 x 3 images, raw labels 1..10)}."""
    import scipy.io
    root.mkdir(parents=True)
    out = {}
    for split, n in sizes.items():
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.arange(n).reshape(n, 1) % 10 + 1          # covers label 10 (= digit 0)
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})
        out[split] = (np.moveaxis(x, 3, 0), y.reshape(-1))
    return out


CELEBA_ATTRS = [f"Attr_{i:02d}" for i in range(40)]
CELEBA_BOX = (19, 39, 159, 179)         # the documented centre 140x140 box of a 178x218 image


def write_celeba(root: Path, partition: list[int], rng: np.random.Generator) -> np.ndarray:
    """A CelebA root with len(partition) 178x218 JPEGs: green inside the crop box, red outside
    (so the crop box is checkable). Returns the n x 40 0/1 attribute matrix written."""
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    n = len(partition)
    attrs = rng.integers(0, 2, (n, 40))
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for name in names:
        img = Image.new("RGB", (178, 218), (255, 0, 0))
        img.paste((0, 255, 0), CELEBA_BOX)
        img.save(images / name, quality=100, subsampling=0)  # little ringing at the box
    rows = [f"{name} " + " ".join("1" if a else "-1" for a in row)
            for name, row in zip(names, attrs)]
    (root / "list_attr_celeba.txt").write_text(
        f"{n}\n" + " ".join(CELEBA_ATTRS) + "\n" + "\n".join(rows) + "\n")
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{name} {p}\n" for name, p in zip(names, partition)))
    return attrs


CLASS_COLOURS = {"n01": (250, 10, 10), "n02": (10, 250, 10), "n03": (10, 10, 250)}


def write_tiny_imagenet(root: Path, per_class: int) -> list[tuple[str, str]]:
    """Tiny ImageNet's layout with solid-colour images (the colour says the class, sizes vary and
    are not square): train/<wnid>/images/*.JPEG, val/images + val/val_annotations.txt, and an
    unlabelled test/images. Returns the val annotations [(file, wnid)]."""
    for c, colour in CLASS_COLOURS.items():
        d = root / "train" / c / "images"
        d.mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (40 + 8 * i, 30), colour).save(d / f"{c}_{i}.JPEG", quality=95)
        (root / "train" / c / f"{c}_boxes.txt").write_text("unused\n")
    val = root / "val" / "images"
    val.mkdir(parents=True)
    annotations = [(f"val_{i}.JPEG", c) for i, c in enumerate(["n03", "n01", "n02", "n01"])]
    for file, c in annotations:
        Image.new("RGB", (64, 64), CLASS_COLOURS[c]).save(val / file, quality=95)
    (root / "val" / "val_annotations.txt").write_text(
        "".join(f"{file}\t{c}\t0\t0\t10\t10\n" for file, c in annotations))
    test = root / "test" / "images"
    test.mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(test / "test_0.JPEG")
    return annotations


def write_plain_folder(root: Path) -> list[Path]:
    """Nested unlabelled images of mixed formats and modes; returns their paths."""
    (root / "a" / "b").mkdir(parents=True)
    paths = []
    for i, (rel, mode) in enumerate([("x.png", "RGB"), ("a/y.jpg", "L"), ("a/b/z.PNG", "RGBA"),
                                     ("a/b/w.jpeg", "RGB"), ("v.bmp", "RGB")]):
        p = root / rel
        Image.new(mode, (20 + i, 30), 100).save(p)
        paths.append(p)
    (root / "notes.txt").write_text("not an image\n")
    return paths


# ---- readers -------------------------------------------------------------------------------

def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def read_webdataset(paths: list[Path]) -> list[dict]:
    """Every sample of `paths`, in order, as the plain webdataset library yields it."""
    import webdataset as wds
    return list(wds.WebDataset([str(p) for p in paths], shardshuffle=False, empty_check=False))


def index_keys(idx: Path) -> list[str]:
    """The sample keys a DALI index lists, in order (from the first member's name)."""
    lines = idx.read_text().splitlines()
    return [line.split()[3].split(".", 1)[0] for line in lines[1:]]


def read_dali(tars: list[Path], exts: list[str], gray: bool = False) -> list[list[np.ndarray]]:
    """Every sample of `tars` read by DALI's webdataset reader with the `.idx` files beside them
    (a CPU pipeline), the image decoded by DALI: [[image, member2, ...], ...] in order."""
    from nvidia.dali import fn, pipeline_def, types
    from ali_dist.data.format import index_name

    idxs = [str(t.with_name(index_name(t.name))) for t in tars]

    @pipeline_def(batch_size=8, num_threads=1, device_id=None)
    def pipe():
        outs = fn.readers.webdataset(paths=[str(t) for t in tars], index_paths=idxs, ext=exts,
                                     name="Reader", pad_last_batch=False)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        outs[0] = fn.decoders.image(outs[0], device="cpu",
                                    output_type=types.GRAY if gray else types.RGB)
        return tuple(outs)

    p = pipe()
    p.build()
    total = p.epoch_size("Reader")
    samples: list[list[np.ndarray]] = []
    while len(samples) < total:
        batch = p.run()
        for i in range(len(batch[0])):
            samples.append([np.array(out[i]) for out in batch])
    return samples[:total]
