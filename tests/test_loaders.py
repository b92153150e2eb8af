"""The image loaders on small real shards: source resolution, DALI (CPU) and webdataset giving
the same tensors, the epoch plan across ranks, resuming, labels, remote sources, and the
embedded digits converted by data_tools."""
from __future__ import annotations

import functools
import hashlib
import http.server
import threading
import warnings

import numpy as np
import pytest
import torch

import shardkit
from ali_dist.config import Config, resolve as resolve_config
from ali_dist.data import make_loader
from ali_dist.data.shards import DataError, read_index, resolve, scan_tar, validation_set

KINDS = ["dali", "webdataset"]


@pytest.fixture(scope="module")
def png(tmp_path_factory):
    """40 training + 10 validation 32 px RGB PNGs with classes, 4 + 1 shards, a manifest."""
    d = tmp_path_factory.mktemp("png")
    return d, shardkit.write(d, {"train": 40, "val": 10})


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """Plain webdataset shards: no manifest, no index; 24 px grey JPEGs with attributes."""
    d = tmp_path_factory.mktemp("plain")
    return d, shardkit.write(d, {"train": 20}, size=24, channels=1, fmt="jpg", label="attr",
                             manifest=False, index=False, per_shard=8)


def key_of(img: torch.Tensor) -> str:
    return hashlib.sha1(np.round(img.numpy() * 255).astype(np.uint8).tobytes()).hexdigest()


def take(loader, n: int) -> list:
    it = iter(loader)
    return [next(it) for _ in range(n)]


# ---- resolving sources ---------------------------------------------------------------------------

def test_every_kind_of_local_source_resolves_to_the_same_shards(png):
    d, written = png
    shards = [str(p) for p in written["train"].shards]
    for source in (str(d), str(d / "manifest.json"), f"{d}/train-{{000000..000003}}.tar",
                   f"{d}/train-*.tar"):
        s = resolve(source)
        assert [str(p) for p in s.shards] == shards, source
        assert s.counts == [10, 10, 10, 10] and s.image_hw == (32, 32) and s.label == "cls"
    m = resolve(str(d))
    assert m.classes == [f"c{i}" for i in range(10)] and m.channels == 3
    val = validation_set(m, None)
    assert [str(p) for p in val.shards] == [str(p) for p in written["val"].shards]
    assert validation_set(resolve(f"{d}/train-*.tar"), None).total == 10   # val-*.tar beside
    assert validation_set(m, f"{d}/train-000000.tar").total == 10          # --val-data wins


def test_plain_shards_are_counted_and_indexed_by_the_loader(plain, tmp_path):
    d, written = plain
    s = resolve(str(d))
    assert s.manifest is None and s.counts == [8, 8, 4] and s.image_hw == (24, 24)
    assert s.label == "attr" and s.n_attributes == 5 and s.channels == 1
    assert [len(scan_tar(str(p))) for p in written["train"].shards] == [8, 8, 4]
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in written["train"].shards:
        (copy / p.name).write_bytes(p.read_bytes())
    shardkit.loader("dali", resolve(str(copy)), image_size=32, channels=1)
    for p in written["train"].shards:   # DALI's index made beside each shard, and right
        assert [e.key for e in read_index(str(copy / p.name.replace(".tar", ".idx")))] == \
            [e.key for e in scan_tar(str(p))]


# ---- the same sample gives the same tensor ---------------------------------------------------

@pytest.mark.parametrize("fmt,stored,wanted", [("png", 3, 3), ("png", 1, 1), ("png", 1, 3),
                                               ("jpg", 3, 3), ("png", 3, 1)])
def test_dali_and_webdataset_decode_alike(tmp_path, fmt, stored, wanted):
    written = shardkit.write(tmp_path, {"train": 12}, channels=stored, fmt=fmt, per_shard=6)
    s = resolve(str(tmp_path))
    x = {k: shardkit.loader(k, s, channels=wanted).validation_batch(12) for k in KINDS}
    assert x["dali"].shape == x["webdataset"].shape == (12, wanted, 32, 32)
    diff = (x["dali"] - x["webdataset"]).abs()
    if fmt == "png" and stored == wanted:   # lossless and no conversion: exact, as written
        assert torch.equal(x["dali"], x["webdataset"])
        assert torch.equal(x["dali"], written["train"].expected(wanted))
    elif fmt == "png":                      # RGB -> grey: the luma weights round alike
        assert diff.max() <= 1 / 255 + 1e-6
    else:                                   # JPEG: within decoder tolerance
        assert diff.max() <= 3 / 255 + 1e-6 and diff.mean() < 0.5 / 255


def test_resize_when_the_data_is_not_the_models_size(plain):
    d, written = plain                      # 24 px grey -> the 32 px model: upsampled
    s = resolve(str(d))
    x = {k: shardkit.loader(k, s, channels=1).validation_batch(8) for k in KINDS}
    assert x["dali"].shape == x["webdataset"].shape == (8, 1, 32, 32)
    diff = (x["dali"] - x["webdataset"]).abs()
    assert diff.mean() < 2 / 255 and diff.max() < 16 / 255


def test_non_square_images_are_centre_cropped_alike(tmp_path):
    import webdataset as wds
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (31, 40, 3), dtype=np.uint8) for _ in range(4)]
    with wds.ShardWriter(str(tmp_path / "train-%06d.tar"), maxcount=10, verbose=0) as sink:
        for i, img in enumerate(images):
            sink.write({"__key__": f"{i:04d}", "png": shardkit.encode(img, "png")})
    s = resolve(str(tmp_path))
    assert s.image_hw == (31, 40)
    # 31 px: a crop alone, so exact; the odd margin (9 px) puts 5 on the left in both
    x = {k: shardkit.loader(k, s, image_size=31, batch_size=4).validation_batch(4) for k in KINDS}
    assert torch.equal(x["dali"], x["webdataset"])
    expected = torch.from_numpy(images[0][:, 5:36].transpose(2, 0, 1).copy()).float() / 255
    assert torch.equal(x["dali"][0], expected)
    x = {k: shardkit.loader(k, s, image_size=16, batch_size=4).validation_batch(4)
         for k in KINDS}
    diff = (x["dali"] - x["webdataset"]).abs()     # antialiased shrink: filters differ a little
    assert diff.mean() < 2 / 255 and diff.max() < 32 / 255


# ---- the epoch plan --------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _epoch_images(directory: str, kind: str, rank: int, epoch: int) -> list[str]:
    s = resolve(directory)
    loader = shardkit.loader(kind, s, batch_size=5, rank=rank, world=2, seed=3, threads=2)
    loader.load_state_dict({"epoch": epoch, "batch": 0})
    batches = take(loader, loader.batches_per_epoch)
    for x, y in batches:                    # labels stay with their images
        assert torch.equal((x[:, 0, 0, 0] * 255).round().long(), 20 * y)
    return [key_of(img) for x, _ in batches for img in x]


def test_ranks_split_each_epoch_and_both_loaders_agree_on_the_split(png):
    d, written = png
    every = {key_of(img) for img in written["train"].expected(3)}
    for kind in KINDS:
        for epoch in (0, 1):
            r0, r1 = (_epoch_images(str(d), kind, r, epoch) for r in (0, 1))
            assert len(r0) == len(r1) == 20             # 4 batches of 5 on each rank
            assert set(r0).isdisjoint(r1) and set(r0) | set(r1) == every
        # rank 0 does not keep one half of the data: shards are reordered every epoch
        assert len({frozenset(_epoch_images(str(d), kind, 0, e)) for e in range(4)}) > 1
    for epoch in (0, 1):                    # the same part of the data, in another order
        a, b = (_epoch_images(str(d), k, 0, epoch) for k in KINDS)
        assert set(a) == set(b) and a != b


@pytest.mark.parametrize("kind,threads", [("dali", 1), ("webdataset", 0), ("webdataset", 2)])
def test_resume_continues_with_the_same_batches(png, kind, threads):
    s = resolve(str(png[0]))
    make = functools.partial(shardkit.loader, kind, s, batch_size=8, threads=threads, seed=1,
                             flip=True)
    straight = take(make(), 8)              # 5 batches an epoch: crosses into epoch 1
    first = make()
    take(first, 3)
    state = first.state_dict()
    assert state == {"epoch": 0, "batch": 3}
    resumed = make()
    resumed.load_state_dict(state)
    for (x, y), (x2, y2) in zip(straight[3:], take(resumed, 5)):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    assert resumed.state_dict() == {"epoch": 1, "batch": 3}


def test_flip_mirrors_some_images_and_nothing_else(png):
    d, written = png
    plain_images = written["train"].expected(3)
    unflipped = {key_of(i) for i in plain_images}
    allowed = unflipped | {key_of(i.flip(-1)) for i in plain_images}
    for kind in KINDS:
        x = torch.cat([b[0] for b in take(shardkit.loader(kind, resolve(str(d)), flip=True), 5)])
        keys = [key_of(i) for i in x]
        assert set(keys) <= allowed
        mirrored = sum(k not in unflipped for k in keys)
        assert 5 < mirrored < 35


def _cached(d, rank=0, world=2, flip=False, batch=8):
    """--cache-on-device through make_loader, as a run builds it (svhn: 32 px RGB)."""
    cfg = Config()
    cfg.model.preset, cfg.data.data, cfg.optim.batch_size = "svhn", str(d), batch
    cfg.data.cache_on_device, cfg.data.flip, cfg.data.loader = True, flip, "webdataset"
    from ali_dist.config import resolve as resolve_config
    return make_loader(resolve_config(cfg), rank, world, torch.device("cpu"))


def test_cache_on_device_serves_each_rank_its_shuffled_part_every_epoch(png):
    d, written = png
    every = [key_of(img) for img in written["train"].expected(3)]
    caches = [_cached(d, r) for r in (0, 1)]
    assert type(caches[0]).__name__ == "DeviceCache" and caches[0].batches_per_epoch == 2
    assert caches[0].x.dtype == torch.uint8 and len(caches[0].x) == 40   # decoded once
    its = [iter(c) for c in caches]
    epochs = []
    for _ in range(3):
        keys = [[key_of(img) for _ in range(2) for img in next(it)[0]] for it in its]
        assert all(len(k) == 16 for k in keys) and set(keys[0]).isdisjoint(keys[1])
        assert set(keys[0]) | set(keys[1]) <= set(every)
        epochs.append(keys[0])
    assert len({tuple(e) for e in epochs}) == 3           # another order every epoch
    x, y = next(iter(_cached(d, 0)))
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and y.dtype == torch.long
    by_key = dict(zip(every, written["train"].labels))
    assert [by_key[key_of(img)] for img in x] == y.tolist()   # labels travel with images


def test_cache_on_device_resumes_and_flips(png):
    d, written = png
    straight = take(_cached(d, flip=True), 5)              # crosses into epoch 2
    first = _cached(d, flip=True)
    take(first, 3)
    assert first.state_dict() == {"epoch": 1, "batch": 1}
    resumed = _cached(d, flip=True)
    resumed.load_state_dict(first.state_dict())
    for (x, y), (x2, y2) in zip(straight[3:], take(resumed, 2)):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    plain_images = written["train"].expected(3)
    unflipped = {key_of(i) for i in plain_images}
    keys = [key_of(i) for x, _ in take(_cached(d, flip=True), 10) for i in x]
    assert set(keys) <= unflipped | {key_of(i.flip(-1)) for i in plain_images}
    assert 10 < sum(k not in unflipped for k in keys) < 70


def test_labels_attributes_and_none(plain, tmp_path):
    d, written = plain
    for kind in KINDS:
        loader = shardkit.loader(kind, resolve(str(d)), channels=1, batch_size=4)
        x, y = take(loader, 1)[0]
        assert y.dtype == torch.uint8 and y.shape == (4, 5)
        written_attrs = {a.tobytes() for a in written["train"].labels}
        assert all(row.numpy().tobytes() in written_attrs for row in y)
    shardkit.write(tmp_path, {"train": 16}, label=None, per_shard=16)
    for kind in KINDS:
        x, y = take(shardkit.loader(kind, resolve(str(tmp_path))), 1)[0]
        assert y is None and x.shape == (8, 3, 32, 32) and x.dtype == torch.float32


def test_too_little_data_for_one_batch_per_rank(png):
    with pytest.raises(DataError, match=r"40 samples cannot fill one batch of 16 on each of 4"):
        shardkit.loader("webdataset", resolve(str(png[0])), batch_size=16, world=4)


# ---- through make_loader ---------------------------------------------------------------------

def _cfg(data, preset="cifar10", loader="auto", batch=8) -> Config:
    cfg = Config()
    cfg.model.preset, cfg.data.data, cfg.data.loader = preset, data, loader
    cfg.optim.batch_size, cfg.data.loader_threads = batch, 1
    return resolve_config(cfg)


def test_digits_from_data_tools_through_make_loader(tmp_path):
    from data_tools import ensure_digits
    manifest = ensure_digits(tmp_path)
    for choice, name in (("auto", "DaliLoader"), ("webdataset", "WdsLoader")):
        loader = make_loader(_cfg(str(manifest), "digits", choice, 64), 0, 2, torch.device("cpu"))
        assert type(loader).__name__ == name
        assert loader.batches_per_epoch == 1437 // 128
        x, y = next(iter(loader))
        assert x.shape == (64, 1, 32, 32) and y.dtype == torch.long and 0 <= y.min() <= y.max() <= 9
        v = loader.validation_batch(100)
        assert v.shape == (100, 1, 32, 32) and 0 <= float(v.min()) and float(v.max()) <= 1


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(png):
    d = png[0]
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(d)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", d
    server.shutdown()


def test_http_and_pipe_sources_read_with_webdataset(served, png):
    url, d = served
    local = make_loader(_cfg(str(d), loader="webdataset"), 0, 1, torch.device("cpu"))
    expected = local.validation_batch(10)
    remote = make_loader(_cfg(f"{url}/manifest.json"), 0, 1, torch.device("cpu"))
    assert type(remote).__name__ == "WdsLoader"     # auto: DALI reads local files only
    assert remote.batches_per_epoch == 5
    assert torch.equal(remote.validation_batch(10), expected)   # the manifest's val split
    x, y = next(iter(remote))
    assert x.shape == (8, 3, 32, 32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        counted = resolve(f"{url}/train-{{000000..000003}}.tar")
    assert counted.counts == [10, 10, 10, 10] and "streaming" in str(caught[0].message)
    with pytest.warns(UserWarning, match="counting samples by streaming"):
        piped = resolve(f"pipe:cat {d}/train-{{000000..000003}}.tar")
    assert len(piped.shards) == 4 and piped.total == 40
    first_train = png[1]["train"].expected(3)[:10]  # no val split: the start of the training data
    assert torch.equal(shardkit.loader("webdataset", piped).validation_batch(10), first_train)
    with pytest.raises(DataError, match="DALI reads local shards only"):
        make_loader(_cfg(f"{url}/manifest.json", loader="dali"), 0, 1, torch.device("cpu"))


def test_throughput_benchmark_writes_a_table_and_json(tmp_path, capsys):
    import importlib.util
    import json
    path = shardkit.REPO / "benchmarks" / "data_throughput.py"
    spec = importlib.util.spec_from_file_location("data_throughput", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    assert bench.main(["--sizes", "32", "--batch", "10", "--batches", "2", "--warmup", "1",
                       "--repeats", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["device"]["cores"] and {r["loader"] for r in result["rows"]} == set(KINDS)
    assert all(r["images_per_s"] > 0 for r in result["rows"])
    assert "images/s" in capsys.readouterr().out
