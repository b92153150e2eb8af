"""data_tools: real source formats in, shards out, read back by webdataset and by DALI."""
from __future__ import annotations

import json
import multiprocessing
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from ali_dist.data.format import (ATTR_EXT, CLASS_EXT, FORMAT_VERSION, MANIFEST, index_name,
                                  shard_name)
from data_tools import celeba, cifar, digits, folders, manifest, svhn
from data_tools.cli import main as cli_main
from data_tools.convert import convert
from data_tools.dataset import SourceError
from formats import (CELEBA_ATTRS, CIFAR_CLASSES, CLASS_COLOURS, decode, index_keys, read_dali,
                     read_webdataset, write_celeba, write_cifar, write_plain_folder, write_svhn,
                     write_tiny_imagenet)

CIFAR_BATCHES, CIFAR_TEST = [7, 6], 5


def shards(out: Path, split: str) -> list[Path]:
    """A split's shard paths, as the manifest lists them."""
    m = json.loads((out / MANIFEST).read_text())
    return [out / s["name"] for s in m["splits"][split]["shards"]]


def tree_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.fixture(scope="module")
def cifar_src(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py"
    return root, write_cifar(root, CIFAR_BATCHES, CIFAR_TEST, np.random.default_rng(0))


@pytest.fixture(scope="module")
def cifar_out(cifar_src, tmp_path_factory):
    out = tmp_path_factory.mktemp("cifar_out")
    # --max-count 4: several shards per split
    assert cli_main(["cifar10", str(cifar_src[0]), str(out), "--max-count", "4",
                     "--workers", "1", "--quiet"]) == 0
    return out


# ---- CIFAR-10: the reference checks, then idempotence and crashes ----------------------------

def test_cifar_manifest_and_checksums(cifar_out):
    m = json.loads((cifar_out / MANIFEST).read_text())
    assert m["format"] == FORMAT_VERSION and m["dataset"] == "cifar10"
    assert (m["image_size"], m["channels"], m["image_format"]) == (32, 3, "png")
    assert m["classes"] == CIFAR_CLASSES and m["attributes"] is None
    assert {s: m["splits"][s]["count"] for s in m["splits"]} == {"train": 13, "test": 5}
    train = m["splits"]["train"]["shards"]
    assert [s["name"] for s in train] == [shard_name("train", i) for i in range(4)]
    assert [s["count"] for s in train] == [4, 4, 4, 1]
    for s in train + m["splits"]["test"]["shards"]:
        assert s["index"] == index_name(s["name"])
        assert s["sha256"] == manifest.file_sha256(cifar_out / s["name"])
        assert s["bytes"] == (cifar_out / s["name"]).stat().st_size
    assert cli_main(["verify", str(cifar_out)]) == 0


def test_index_files_equal_what_dali_wds2idx_writes(cifar_out, tmp_path):
    from wds2idx import IndexCreator          # the tool that ships with DALI
    for shard in shards(cifar_out, "train") + shards(cifar_out, "test"):
        ref = tmp_path / "ref.idx"
        with IndexCreator(str(shard), str(ref), verbose=False) as creator:
            creator.create_index()
        assert (cifar_out / index_name(shard.name)).read_text() == ref.read_text()


def test_cifar_round_trip_through_webdataset(cifar_src, cifar_out):
    source = cifar_src[1]
    for split in ("train", "test"):
        data, labels = source[split]
        samples = read_webdataset(shards(cifar_out, split))
        keys = sorted(int(s["__key__"]) for s in samples)
        assert keys == list(range(len(data)))          # every source row exactly once
        for s in samples:
            k = int(s["__key__"])
            assert int(s[CLASS_EXT]) == labels[k]
            expected = data[k].reshape(3, 32, 32).transpose(1, 2, 0)
            np.testing.assert_array_equal(decode(s["png"]), expected)


def test_cifar_read_by_dali_with_index_files(cifar_src, cifar_out):
    data, labels = cifar_src[1]["train"]
    tars = shards(cifar_out, "train")
    keys = [int(k) for t in tars for k in index_keys(t.with_name(index_name(t.name)))]
    samples = read_dali(tars, ["png", CLASS_EXT])
    assert len(samples) == len(keys) == len(data)
    for key, (image, cls) in zip(keys, samples):
        assert int(bytes(cls).decode()) == labels[key]
        np.testing.assert_array_equal(image, data[key].reshape(3, 32, 32).transpose(1, 2, 0))


def test_rerun_skips_and_force_rewrites_identically(cifar_src, cifar_out):
    before = tree_bytes(cifar_out)
    mtimes = {p.name: p.stat().st_mtime_ns for p in cifar_out.iterdir()}
    dataset = cifar.load(cifar_src[0])
    convert(dataset, cifar_out, max_count=4, progress=False)           # skipped: complete
    assert {p.name: p.stat().st_mtime_ns for p in cifar_out.iterdir()} == mtimes
    convert(dataset, cifar_out, max_count=4, progress=False, force=True, workers=2)
    assert tree_bytes(cifar_out) == before                            # byte-identical


def test_crash_midway_leaves_no_whole_looking_output(cifar_src, tmp_path):
    out = tmp_path / "out"
    dataset = cifar.load(cifar_src[0])
    good_encode, calls = dataset.encode, []

    def dies_on_sixth(payload):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt("simulated crash")
        return good_encode(payload)

    dataset.encode = dies_on_sixth
    with pytest.raises(KeyboardInterrupt):
        convert(dataset, out, max_count=4, progress=False)
    assert not (out / MANIFEST).exists()
    assert not manifest.is_complete(out)
    # the one finished shard is whole; the interrupted one was never renamed into place
    assert sorted(p.name for p in out.iterdir()) == ["train-000000.idx", "train-000000.tar"]
    with tarfile.open(out / "train-000000.tar") as t:
        assert len(t.getnames()) == 8

    # a hard kill leaves a .tmp behind: not a shard to readers, cleaned by the next run
    (out / (shard_name("train", 1) + ".tmp")).write_bytes(b"\0" * 700)
    assert [p.name for p in out.glob("*.tar")] == ["train-000000.tar"]
    dataset.encode = good_encode
    convert(dataset, out, max_count=4, progress=False)
    assert manifest.is_complete(out) and not list(out.glob("*.tmp"))
    assert not manifest.problems(out, manifest.read(out), checksums=True)


def test_cifar_val_carved_from_train(cifar_src, tmp_path):
    dataset = cifar.load(cifar_src[0], val=3, seed=1)
    convert(dataset, tmp_path, progress=False)
    m = manifest.read(tmp_path)
    assert {s: m["splits"][s]["count"] for s in m["splits"]} == {"train": 10, "val": 3, "test": 5}
    train = {s["__key__"] for s in read_webdataset(shards(tmp_path, "train"))}
    val = {s["__key__"] for s in read_webdataset(shards(tmp_path, "val"))}
    assert not train & val and len(train | val) == sum(CIFAR_BATCHES)


# ---- other sources ---------------------------------------------------------------------------

def test_svhn_labels_and_pixels(tmp_path):
    src = write_svhn(tmp_path / "svhn", {"train": 12, "test": 4}, np.random.default_rng(1))
    out = tmp_path / "out"
    convert(svhn.load(tmp_path / "svhn"), out, progress=False)
    m = manifest.read(out)
    assert set(m["splits"]) == {"train", "test"} and m["classes"][0] == "0"
    for split, (x, y) in src.items():
        samples = read_webdataset(shards(out, split))
        assert len(samples) == len(y)
        for s in samples:
            k = int(s["__key__"])
            assert int(s[CLASS_EXT]) == y[k] % 10                     # 10 means digit 0
            np.testing.assert_array_equal(decode(s["png"]), x[k])
    assert {int(s[CLASS_EXT]) for s in read_webdataset(shards(out, "train"))} >= {0, 9}


def test_celeba_attributes_crop_and_dali(tmp_path):
    partition = [0, 0, 1, 2, 0, 1]
    attrs = write_celeba(tmp_path / "celeba", partition, np.random.default_rng(2))
    out = tmp_path / "out"
    assert cli_main(["celeba", str(tmp_path / "celeba"), str(out), "--size", "64",
                     "--workers", "1", "--quiet"]) == 0
    m = manifest.read(out)
    assert m["attributes"] == CELEBA_ATTRS and m["classes"] is None
    assert (m["image_size"], m["channels"], m["image_format"]) == (64, 3, "jpg")
    assert {s: m["splits"][s]["count"] for s in m["splits"]} == {"train": 3, "val": 2, "test": 1}
    for split, code in (("train", 0), ("val", 1), ("test", 2)):
        samples = read_webdataset(shards(out, split))
        assert sorted(int(s["__key__"]) for s in samples) == \
            [i for i, p in enumerate(partition) if p == code]
        for s in samples:
            assert list(s[ATTR_EXT]) == attrs[int(s["__key__"])].tolist()
            assert CLASS_EXT not in s
    # DALI: jpg + attr members through the index; the crop box holds only the green square
    tars = shards(out, "train")
    keys = [int(k) for t in tars for k in index_keys(t.with_name(index_name(t.name)))]
    for key, (image, attr) in zip(keys, read_dali(tars, ["jpg", ATTR_EXT])):
        assert image.shape == (64, 64, 3)
        assert image[..., 1].min() > 215 and image[..., 0].max() < 40   # no red border
        assert attr.tolist() == attrs[key].tolist()


def test_tiny_imagenet_class_folders(tmp_path, capsys):
    annotations = write_tiny_imagenet(tmp_path / "tiny", per_class=2)
    out = tmp_path / "out"
    assert cli_main(["imagefolder", str(tmp_path / "tiny"), str(out), "--size", "16",
                     "--name", "tinyimagenet", "--workers", "1", "--quiet"]) == 0
    assert "test" in capsys.readouterr().err                # the unlabelled split is skipped
    m = manifest.read(out)
    assert m["dataset"] == "tinyimagenet" and m["classes"] == sorted(CLASS_COLOURS)
    assert {s: m["splits"][s]["count"] for s in m["splits"]} == {"train": 6, "val": 4}
    colours = [CLASS_COLOURS[c] for c in m["classes"]]
    for split in ("train", "val"):
        for s in read_webdataset(shards(out, split)):
            image = decode(s["jpg"])
            assert image.shape == (16, 16, 3)
            nearest = int(np.argmin([np.abs(image.mean((0, 1)) - c).sum() for c in colours]))
            assert nearest == int(s[CLASS_EXT])
    val_labels = sorted(int(s[CLASS_EXT]) for s in read_webdataset(shards(out, "val")))
    assert val_labels == sorted(m["classes"].index(c) for _, c in annotations)


def test_plain_folder_unlabelled(tmp_path):
    paths = write_plain_folder(tmp_path / "photos")
    out = tmp_path / "out"
    convert(folders.load_plain(tmp_path / "photos", size=24, val=1), out, progress=False)
    m = manifest.read(out)
    assert m["classes"] is None and m["channels"] == 3
    assert m["splits"]["train"]["count"] + m["splits"]["val"]["count"] == len(paths)
    for s in read_webdataset(shards(out, "train")):
        assert set(s) - {"__key__", "__url__", "__local_path__"} == {"jpg"}
        assert decode(s["jpg"]).shape == (24, 24, 3)


# ---- the embedded digits ---------------------------------------------------------------------

def _ensure_in_child(cache: str) -> None:
    digits.ensure_digits(cache)


def test_ensure_digits_converts_once_and_redoes_broken_output(tmp_path):
    from sklearn.datasets import load_digits
    cache = tmp_path / "cache"
    # two processes at once on an empty cache
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_ensure_in_child, args=(str(cache),)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    path = digits.ensure_digits(cache)
    out = path.parent
    assert path == cache / "digits" / MANIFEST
    assert sorted(p.name for p in cache.iterdir()) == [".digits.lock", "digits"]
    m = manifest.read(out)
    assert not manifest.problems(out, m, checksums=True)
    assert {s: m["splits"][s]["count"] for s in m["splits"]} == digits.SPLIT_SIZES
    assert (m["image_size"], m["channels"], m["image_format"]) == (32, 1, "png")
    assert len(m["splits"]["train"]["shards"]) == 3

    # DALI decodes the grayscale PNGs to exactly the upsampled source pixels
    source = load_digits()
    tars = shards(out, "val")
    keys = [int(k) for t in tars for k in index_keys(t.with_name(index_name(t.name)))]
    for key, (image, cls) in zip(keys, read_dali(tars, ["png", CLASS_EXT], gray=True)):
        assert int(bytes(cls).decode()) == source.target[key]
        np.testing.assert_array_equal(image[..., 0], digits.upsample(source.images[key]))
    all_keys = [int(s["__key__"]) for split in m["splits"]
                for s in read_webdataset(shards(out, split))]
    assert sorted(all_keys) == list(range(1797))

    # complete: a no-op. Broken (truncated shard, missing manifest): converted again.
    shard = out / m["splits"]["train"]["shards"][1]["name"]
    mtime = shard.stat().st_mtime_ns
    digits.ensure_digits(cache)
    assert shard.stat().st_mtime_ns == mtime
    good = shard.read_bytes()
    shard.write_bytes(good[:1000])
    digits.ensure_digits(cache)
    assert shard.read_bytes() == good
    (out / MANIFEST).unlink()
    assert digits.ensure_digits(cache).is_file()
    assert not manifest.problems(out, manifest.read(out), checksums=True)


# ---- bad input -------------------------------------------------------------------------------

def test_error_missing_source_dir(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert cli_main(["cifar10", str(missing), str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "not a directory" in err


def test_error_pickle_without_labels(cifar_src, tmp_path):
    import shutil
    root = tmp_path / "cifar"
    shutil.copytree(cifar_src[0], root)
    with open(root / "data_batch_2", "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8)}, f)
    with pytest.raises(SourceError, match=r"data_batch_2: missing key\(s\) \['labels'\]"):
        cifar.load(root)


def test_error_celeba_rows_not_matching_images(tmp_path):
    write_celeba(tmp_path / "c", [0, 1, 2], np.random.default_rng(3))
    attr_file = tmp_path / "c" / "list_attr_celeba.txt"
    lines = attr_file.read_text().splitlines()
    attr_file.write_text("\n".join(["2"] + lines[1:-1]) + "\n")      # drop the last row
    with pytest.raises(SourceError, match="list different images.*only in the partition: "
                                          "000003.jpg"):
        celeba.load(tmp_path / "c")
    attr_file.write_text("\n".join(lines[:-1] + [lines[-1] + " 1"]) + "\n")
    with pytest.raises(SourceError, match=r"list_attr_celeba.txt: line 5: expected a file name "
                                          r"and 40 attribute values, found 42"):
        celeba.load(tmp_path / "c")
    attr_file.write_text("\n".join(lines) + "\n")
    (tmp_path / "c" / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(SourceError, match="1 listed image.*not in .*img_align_celeba: 000002"):
        celeba.load(tmp_path / "c")


def test_error_svhn_mat_without_y(tmp_path):
    import scipy.io
    (tmp_path / "s").mkdir()
    scipy.io.savemat(tmp_path / "s" / "train_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8)})
    with pytest.raises(SourceError, match=r"train_32x32.mat: missing variable\(s\) \['y'\]"):
        svhn.load(tmp_path / "s")


def test_help_explains_every_command(capsys):
    for command in ("", "digits", "cifar10", "svhn", "celeba", "imagefolder", "folder", "verify"):
        with pytest.raises(SystemExit) as exit_:
            cli_main([command, "--help"] if command else ["--help"])
        assert exit_.value.code == 0
    assert "--shard-size" in capsys.readouterr().out
