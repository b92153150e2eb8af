"""Bad input, each case for real and with both loaders: a truncated tar, a corrupt JPEG, a
missing label, a wrong image size, an empty shard list, a path that does not exist. Each stops
with an error naming the shard and the sample key, or (skip_bad_samples) is skipped, counted
and warned about while the epoch goes on."""
from __future__ import annotations

import pytest
import torch

import shardkit
from ali_dist.config import Config, resolve as resolve_config
from ali_dist.data import make_loader
from ali_dist.data.shards import DataError, resolve

KINDS = ["dali", "webdataset"]
BAD = 13                                  # the broken sample: in shard 1, key 00000013
KEY = "00000013"


def dataset(tmp_path, mutate=None, fmt="png", **kw):
    written = shardkit.write(tmp_path, {"train": 40}, fmt=fmt, mutate=mutate, **kw)
    return written["train"]


def one_epoch(loader) -> list:
    """Every batch of epoch 0 (fewer than batches_per_epoch when DALI left samples out)."""
    out = []
    for batch in loader:
        state = loader.state_dict()
        if state["epoch"] > 1 or (state["epoch"] == 1 and state["batch"] > 0):
            break                         # a batch of epoch 1: epoch 0 ended short
        out.append(batch)
        if state["epoch"] == 1:
            break
    return out


def assert_skipped(loader) -> None:
    """The bad sample is counted once and warned about, and the epoch still has all its
    batches (topped up with other samples of the rank's part)."""
    with pytest.warns(UserWarning, match=rf"skipped bad sample.*{KEY}"):
        batches = one_epoch(loader)
    assert loader.skipped_samples == 1
    assert len(batches) == loader.batches_per_epoch
    assert all(len(x) == loader.batch_size for x, _ in batches)


# ---- the cases ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_truncated_tar_named_up_front(tmp_path, kind):
    written = dataset(tmp_path)           # manifest and indexes made before the damage
    shardkit.truncate_in(written.shards[1], "00000019")   # the shard's last sample
    with pytest.raises(DataError, match=r"train-000001\.tar: sample '00000019': truncated.*"
                                        r"manifest records \d+"):
        shardkit.loader(kind, resolve(str(tmp_path)))
    with pytest.warns(UserWarning, match="skipped bad sample.*00000019"):
        loader = shardkit.loader(kind, resolve(str(tmp_path)), skip_bad_samples=True)
    assert loader.skipped_samples == 1
    x = torch.cat([b[0] for b in one_epoch(loader)])
    assert len(x) == 32 and loader.skipped_samples == 1


@pytest.mark.parametrize("kind", KINDS)
def test_truncated_plain_shard_found_while_reading(tmp_path, kind):
    written = dataset(tmp_path, manifest=False, index=False)
    shardkit.truncate_in(written.shards[1], "00000015")
    # DALI indexes the shard first (wds2idx) and sees the cut there; webdataset meets it
    # while streaming. Either way: which shard, which sample.
    match = r"train-000001\.tar: sample '00000015': truncated"
    with pytest.raises(DataError, match=match):
        one_epoch(shardkit.loader(kind, resolve(str(tmp_path))))
    # samples 15..19 are gone; 15 is cut (reported), 16..19 were never there
    with pytest.warns(UserWarning, match="skipped bad sample.*00000015.*truncated"):
        loader = shardkit.loader(kind, resolve(str(tmp_path)), skip_bad_samples=True)
        batches = one_epoch(loader)
    assert loader.batches_per_epoch == 35 // 8 == len(batches)
    assert loader.skipped_samples == 1


@pytest.mark.parametrize("kind", KINDS)
def test_corrupt_jpeg(tmp_path, kind):
    dataset(tmp_path, {BAD: shardkit.corrupt_jpeg}, fmt="jpg")
    s = resolve(str(tmp_path))
    with pytest.raises(DataError, match=rf"train-000001\.tar: sample '{KEY}': image does not "
                                        r"decode"):
        one_epoch(shardkit.loader(kind, s))
    assert_skipped(shardkit.loader(kind, s, skip_bad_samples=True))


@pytest.mark.parametrize("kind", KINDS)
def test_missing_label(tmp_path, kind):
    dataset(tmp_path, {BAD: shardkit.drop_label})
    s = resolve(str(tmp_path))
    match = rf"train-000001\.tar: sample '{KEY}': missing its class label \(\.cls\)"
    # DALI: found in the index before any pipeline runs; webdataset: when the sample is read
    with pytest.raises(DataError, match=match):
        one_epoch(shardkit.loader(kind, s))
    if kind == "dali":
        with pytest.warns(UserWarning, match=rf"skipped bad sample.*{KEY}"):
            loader = shardkit.loader(kind, s, skip_bad_samples=True)
        assert loader.skipped_samples == 1 and loader.batches_per_epoch == 39 // 8
        assert len(one_epoch(loader)) == 4
    else:
        assert_skipped(shardkit.loader(kind, s, skip_bad_samples=True))


@pytest.mark.parametrize("kind,model_px", [("dali", 32), ("webdataset", 32), ("dali", 64),
                                           ("webdataset", 64)])
def test_wrong_image_size(tmp_path, kind, model_px):
    # at 64 px the pipeline resizes every image, so the check must look before the resize
    dataset(tmp_path, {BAD: shardkit.resized(40)})
    s = resolve(str(tmp_path))
    with pytest.raises(DataError, match=rf"train-000001\.tar: sample '{KEY}': image is 40x40 "
                                        r"px, the dataset's images are 32x32"):
        one_epoch(shardkit.loader(kind, s, image_size=model_px))
    assert_skipped(shardkit.loader(kind, s, image_size=model_px, skip_bad_samples=True))


# ---- sources that hold nothing -----------------------------------------------------------------

def _load(source, skip=True):
    cfg = Config()
    cfg.model.preset, cfg.data.data, cfg.data.skip_bad_samples = "cifar10", source, skip
    cfg.optim.batch_size = 8
    return make_loader(resolve_config(cfg), 0, 1, torch.device("cpu"))


@pytest.mark.parametrize("skip", [False, True])   # skipping never hides a missing dataset
def test_empty_shard_lists(tmp_path, skip):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"empty: directory holds no manifest\.json and no "
                                        r"train-\*\.tar or \*\.tar shards"):
        _load(str(empty), skip)
    with pytest.raises(DataError, match=r"empty/train-\*\.tar: pattern matches no shard"):
        _load(f"{empty}/train-*.tar", skip)
    dataset(tmp_path / "d")
    with pytest.raises(DataError, match=r"d/train-000004\.tar: no such file or directory \("
                                        r"and 5 more of the 10 names from pattern "
                                        r".*train-\{000000\.\.000009\}\.tar\)"):
        _load(f"{tmp_path}/d/train-{{000000..000009}}.tar", skip)


@pytest.mark.parametrize("skip", [False, True])
def test_paths_that_do_not_exist(tmp_path, skip):
    with pytest.raises(DataError, match=r"nowhere/train-000000\.tar: no such file or directory"):
        _load(f"{tmp_path}/nowhere/train-000000.tar", skip)
    with pytest.raises(DataError, match=r"nowhere: no such file or directory"):
        _load(f"{tmp_path}/nowhere", skip)
    written = dataset(tmp_path / "d")
    written.shards[2].unlink()
    with pytest.raises(DataError, match=r"d/train-000002\.tar: listed in .*manifest\.json but "
                                        r"missing"):
        _load(str(tmp_path / "d"), skip)
