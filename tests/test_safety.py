"""Safe defaults: a cluster run needs a tracking server every node reaches; resume skips a
checkpoint it cannot read (and says which); shard names from a manifest or a URL pattern are
checked before any shell command is made of them."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

import shardkit
from ali_dist import checkpoint
from ali_dist.data import shards
from ali_dist.data.shards import DataError
from ali_dist.train import check_tracking_for_cluster, resume_point
from helpers import run_train


# ---- a cluster needs a shared tracking server --------------------------------------------------

def test_joining_a_cluster_with_a_local_mlflow_store_fails_fast(ali_home, monkeypatch):
    import ray
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")   # nothing there: it must not be tried
    was_up = ray.is_initialized()
    for uri in (None, f"sqlite:///{ali_home}/elsewhere.db", "file:///tmp/mlruns"):
        if uri:
            monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        t0 = time.time()
        with pytest.raises(SystemExit, match=r"RAY_ADDRESS is set .* MLFLOW_TRACKING_URI") as e:
            run_train(["--preset", "toy", "--steps", "10", "--storage", str(ali_home / "r")])
        assert time.time() - t0 < 5 and ray.is_initialized() == was_up
        assert "mlflow server --host" in str(e.value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    check_tracking_for_cluster()                        # a server: fine
    monkeypatch.delenv("RAY_ADDRESS")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    check_tracking_for_cluster()                        # one machine, the local store: fine


# ---- resume past a damaged checkpoint ----------------------------------------------------------

def _checkpoint(root: Path, name: str, step: int) -> Path:
    d = root / "run" / name
    checkpoint.save_state(d, {"step": step, "model": {"w": torch.full((3,), float(step))}})
    return d


def test_resume_point_skips_incomplete_and_unreadable_checkpoints(tmp_path):
    _checkpoint(tmp_path, "checkpoint_2026-01-01_00-00-01.000000", 100)
    good = _checkpoint(tmp_path, "checkpoint_2026-01-01_00-00-02.000000", 200)
    cut = _checkpoint(tmp_path, "checkpoint_2026-01-01_00-00-03.000000", 300)
    with open(cut / "state.pt", "r+b") as f:             # cut short, as a failed copy leaves it
        f.truncate((cut / "state.pt").stat().st_size // 2)
    empty = tmp_path / "run" / "checkpoint_2026-01-01_00-00-04.000000"
    empty.mkdir()                                        # a crash before the state was written
    said: list[str] = []
    assert resume_point(str(tmp_path), "run", said.append) == (str(good), [empty.name, cut.name])
    assert len(said) == 2
    assert said[0].startswith(f"checkpoint {empty} is incomplete or unreadable (no checkpoint "
                              f"state at")
    assert said[1].startswith(f"checkpoint {cut} is incomplete or unreadable (checkpoint")
    assert all(s.endswith("trying the one before it") for s in said)
    assert resume_point(str(tmp_path), "nothing-here", said.append) == (None, [])


# ---- shard names are checked before a command is made of them ----------------------------------

BAD_NAMES = ["train-000000.tar; touch {m}", "$(touch {m}).tar", "train-`touch {m}`.tar",
             "a|b.tar", "train 000000.tar", "../../etc/passwd", "/abs/train.tar",
             "pipe:touch {m}", "s3://other/train.tar"]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_manifest_entries_with_shell_syntax_are_refused(tmp_path, bad):
    marker = tmp_path / "marker"
    shardkit.write(tmp_path / "d", {"train": 20})
    mpath = tmp_path / "d" / "manifest.json"
    manifest = json.loads(mpath.read_text())
    entry = bad.format(m=marker)
    manifest["splits"]["train"]["shards"][1]["name"] = entry
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(DataError) as e:
        shards.resolve(str(tmp_path / "d"))
    msg = str(e.value)
    assert msg.startswith(f"{mpath}: shard entry of split 'train' {entry!r}")
    assert "plain file names" in msg
    # a remote manifest with the same entry: refused before a URL or an s3 command is made
    for base in ("https://data.example/d/manifest.json", "s3://bucket/d/manifest.json"):
        with pytest.raises(DataError, match="shard entry of split 'train'"):
            shards._from_manifest(base, shards._parse_manifest(json.dumps(manifest), base),
                                  "train")
    assert not marker.exists()


def test_remote_manifest_names_join_their_directory(tmp_path):
    shardkit.write(tmp_path / "d", {"train": 20})
    text = (tmp_path / "d" / "manifest.json").read_text()
    s = shards._from_manifest("s3://bucket/sets/d/manifest.json",
                              shards._parse_manifest(text, "m"), "train")
    assert s.shards == ["s3://bucket/sets/d/train-000000.tar", "s3://bucket/sets/d/train-000001.tar"]
    assert shards.wds_urls(s.shards)[0] == "pipe:aws s3 cp s3://bucket/sets/d/train-000000.tar -"


def test_s3_urls_with_shell_syntax_are_refused_before_any_command_runs(tmp_path):
    marker = tmp_path / "marker"
    for url in (f"s3://bucket/train-{{0..1}}.tar;touch {marker}",
                f"s3://bucket/$(touch {marker})-{{000000..000001}}.tar"):
        with pytest.raises(DataError, match=r"shard URL .* contains .*opened through shell"):
            shards.resolve(url)
    with pytest.raises(DataError, match="shard URL"):
        shards.wds_urls([f"s3://bucket/x.tar && touch {marker}"])
    assert not marker.exists()
