"""`python -m ali_dist.train` end to end: real Ray Train (2 gloo workers), real MLflow."""
import json
from pathlib import Path

import pytest
import torch

import ali_dist
from ali_dist import storage
from ali_dist.models import get_preset
from helpers import run_train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    from helpers import private_home, start_local_ray
    start_local_ray()
    home = tmp_path_factory.mktemp("home")
    mp = private_home(home)
    out = tmp_path_factory.mktemp("out")
    summary = run_train(["--preset", "toy", "--workers", "2", "--batch-size", "100",
                         "--steps", "300", "--log-every", "50", "--eval-every", "150",
                         "--checkpoint-every", "100", "--storage", str(out / "ray"),
                         "--name", "toy2", "--experiment", "t"])
    yield summary, out
    mp.undo()


def test_two_worker_run_logs_one_mlflow_run(toy_run):
    from mlflow.tracking import MlflowClient
    summary, _ = toy_run
    client = MlflowClient(summary["tracking_uri"])
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["preset"] == "toy" and run.data.tags["world_size"] == "2"
    assert len(run.data.tags["git_commit"]) in (40, 7) or run.data.tags["git_commit"] == "unknown"
    p = run.data.params
    assert float(p["optim.lr"]) == get_preset("toy").lr and p["run.workers"] == "2"
    assert p["optim.beta2"] == "0.999" and p["model.encoder_noise"] == "2"
    hist = client.get_metric_history(run.info.run_id, "loss_d")
    assert [m.step for m in hist] == [50, 100, 150, 200, 250, 300]
    for name in ("modes_paper", "modes_strict", "high_quality", "reverse_kl"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [150, 300]
    assert client.get_metric_history(run.info.run_id, "samples_per_s")[-1].value > 0
    assert "toy_panels.png" in {a.path for a in client.list_artifacts(run.info.run_id)}
    models = client.search_logged_models([run.info.experiment_id],
                                         filter_string=f"source_run_id = '{run.info.run_id}'")
    assert [m.name for m in models] == ["model"]    # an MLflow model: see test_user_run.py
    assert summary["metrics"]["step"] == 300


def test_checkpoints_are_kept_in_ray_storage(toy_run):
    summary, out = toy_run
    ckpts = sorted(p for p in (out / "ray" / "toy2").glob("checkpoint_*") if p.is_dir())
    assert 1 <= len(ckpts) <= 3                                  # keep_checkpoints default 3
    state = torch.load(ckpts[-1] / "state.pt", weights_only=True)
    assert state["step"] == 300 and len(state["rng"]) == 2       # every rank's RNG
    assert set(state) >= {"method", "model", "optimizers", "scaler", "loader", "config"}
    assert set(state["optimizers"]) == {"d", "g"}
    assert json.loads((out / "ray" / "toy2" / storage.RUN_META).read_text())[
        "mlflow_run_id"] == summary["mlflow_run_id"]


def test_trained_model_loads_from_output_and_from_mlflow(toy_run):
    summary, _ = toy_run
    for src in (summary["model_dir"], f"runs:/{summary['mlflow_run_id']}/model"):
        m = ali_dist.load(src)
        assert not m.training
        x = torch.randn(5, 2)
        assert m.encode(x).shape == (5, 2) and m.reconstruct(x).shape == (5, 2)
        assert m.sample(7).shape == (7, 2) and m.decode(torch.zeros(3, 2)).shape == (3, 2)
    a, b = ali_dist.load(summary["model_dir"]), ali_dist.load(summary["model_dir"])
    x = torch.randn(5, 2)
    assert torch.equal(a.encode(x, sample=False), b.encode(x, sample=False))


def test_evaluate_a_run_by_its_mlflow_id(toy_run, tmp_path):
    """`python -m ali_dist.evaluate <run id>`: the model downloaded from the run, the toy's
    mode counts and panels logged back into it at its last step, with the report page."""
    from mlflow.tracking import MlflowClient

    from ali_dist.evaluate.cli import main as evaluate_main
    summary, _ = toy_run
    run_id = summary["mlflow_run_id"]
    assert evaluate_main([run_id, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["step"] == 300 and report["mlflow_run_id"] == run_id
    client = MlflowClient(summary["tracking_uri"])
    arts = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    assert {"evaluation/toy_panels.png", "evaluation/report.html"} <= arts
    strict = client.get_metric_history(run_id, "modes_strict")
    assert [m.step for m in strict] == [150, 300, 300]     # training's two, then this one
    assert strict[-1].value == report["metrics"]["modes_strict"]


def test_existing_run_name_needs_resume(toy_run):
    _, out = toy_run
    with pytest.raises(SystemExit, match="--resume"):
        run_train(["--preset", "toy", "--steps", "10", "--storage", str(out / "ray"),
                   "--name", "toy2"])
    with pytest.raises(SystemExit, match="no run named 'other'"):
        run_train(["--preset", "toy", "--steps", "10", "--storage", str(out / "ray"),
                   "--name", "other", "--resume"])


def test_load_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model at"):
        ali_dist.load(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="config.json"):
        ali_dist.load(tmp_path)


DIGITS_STEPS = 300      # enough for the probe's margin below on every seed measured


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """The no-argument demo's path at a short budget: embedded digits converted to shards on
    first use, DALI on 2 Ray workers with batch norm over both (--sync-bn), grids in MLflow,
    the L2-SVM probe at the end."""
    from helpers import private_home, start_local_ray
    start_local_ray()
    home = tmp_path_factory.mktemp("home")
    mp = private_home(home)
    out = tmp_path_factory.mktemp("out")
    summary = run_train(["--steps", str(DIGITS_STEPS), "--log-every", "100",
                         "--eval-every", str(DIGITS_STEPS), "--checkpoint-every",
                         str(DIGITS_STEPS), "--workers", "2", "--sync-bn",
                         "--probe-draws", "20", "--storage", str(out / "ray"),
                         "--name", "digits", "--experiment", "demo"])
    yield summary, home
    mp.undo()


def test_default_run_is_the_digits_demo_with_grids_in_mlflow(digits_run):
    from mlflow.tracking import MlflowClient
    summary, home = digits_run
    assert (home / "data" / "digits" / "manifest.json").is_file()   # converted on first use
    client = MlflowClient(summary["tracking_uri"])
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.tags["preset"] == "digits" and run.data.params["data.loader"] == "auto"
    paths = {a.path for d in ("samples", "reconstructions")
             for a in client.list_artifacts(run.info.run_id, d)}
    last = f"{DIGITS_STEPS:07d}"
    assert paths == {f"samples/step_{last}.png", f"reconstructions/step_{last}.png"}
    local = client.download_artifacts(run.info.run_id, f"reconstructions/step_{last}.png")
    from PIL import Image
    img = Image.open(local)
    assert img.size == (10 * 33 + 1, 10 * 33 + 1)   # 50 inputs beside 50 reconstructions
    m = summary["metrics"]
    assert m["skipped_samples"] == 0 and m["recon_mse_random_pair"] > 0
    # the preset's cycle term: reconstructions keep their input's digit (plain ALI's kept it
    # 23 % of the time after 1,500 steps; a pixel classifier reads the real digits at 98 %)
    assert m["class_acc_real"] > 0.9 and m["class_acc_recon"] > FAITHFUL, m
    model = ali_dist.load(summary["model_dir"])
    x = torch.rand(3, 1, 32, 32)
    assert model.reconstruct(x).shape == x.shape and model.sample(2).shape == (2, 1, 32, 32)


def test_digits_features_beat_raw_pixels_in_the_papers_svm_protocol(digits_run):
    """The paper's yardstick at the end of the demo's run (2 workers, --sync-bn): an L2-SVM on
    100 labels, on the encoder's features against the same SVM on raw pixels. Raw pixels give
    12.8 % test error on these digits; the margin asserted is one every measured seed met."""
    from mlflow.tracking import MlflowClient
    summary, _ = digits_run
    m = summary["metrics"]
    assert m["probe_labels"] == 100 and m["probe_dims"] == 64 * 16 + 128 + 128 + 8   # z: 8
    assert m["probe_error"] < m["probe_pixels_error"] - PROBE_MARGIN, m
    client = MlflowClient(summary["tracking_uri"])
    logged = client.get_run(summary["mlflow_run_id"]).data.metrics
    assert logged["probe_error"] == pytest.approx(m["probe_error"])


FAITHFUL = 0.6         # share of reconstructions given their input's class, at 300 steps
PROBE_MARGIN = 0.01     # features at least one point (of test error) below raw pixels


def test_shards_from_webdatasets_own_writer_train(tmp_path):
    """Shards written by `webdataset.ShardWriter`, no manifest, no DALI index: the loop (what
    every Ray worker runs) trains on them through the automatic loader choice."""
    import shardkit
    from ali_dist import config as config_lib, loop
    shardkit.write(tmp_path / "wds", {"train": 48}, size=32, channels=1, manifest=False,
                   index=False, per_shard=16)
    cfg = config_lib.Config()
    cfg.model.preset, cfg.data.data = "digits", str(tmp_path / "wds")
    cfg.optim.steps, cfg.optim.batch_size = 6, 8
    cfg.run.log_every, cfg.run.eval_every = 3, 6
    reports = []
    loop.run(config_lib.resolve(cfg), torch.device("cpu"), lambda m, s: reports.append(m))
    assert reports[-1]["step"] == 6 and reports[-1]["loss_d"] > 0
    # A train-only dataset has nothing to measure the probe on: skipped, never on train images.
    assert "probe_error" not in reports[-1]
