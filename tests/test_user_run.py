"""A training run as a user meets it, against a real MLflow server on 127.0.0.1: the console
(our lines only; Ray's output in the log file the start line names), the model as MLflow
understands it (a pyfunc model, registered, checkpoints as artifacts), the experiment's kind,
the run seen in headless Chromium, a resume past an unreadable checkpoint, and bad input
stopped at once with one message."""
from __future__ import annotations

import contextlib
import io
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import ali_dist
from ali_dist import storage, tracking
from helpers import private_home, run_train, start_local_ray

pytestmark = pytest.mark.slow
STEPS = 300


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, mlflow_server):
    start_local_ray()
    home = tmp_path_factory.mktemp("home")
    mp = private_home(home)
    mp.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    out = tmp_path_factory.mktemp("out")
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        summary = run_train([
# the paper's game: the UI's metrics page lists loss_d among its first charts
            "--preset", "toy", "--cycle", "0", "--workers", "2", "--batch-size", "100", "--steps", str(STEPS),
            "--log-every", "50",
            "--eval-every", "150", "--checkpoint-every", "100", "--storage", str(out / "ray"),
            "--name", "user-toy", "--experiment", "user", "--register", "ali-toy",
            "--log-checkpoints"])
    yield summary, console.getvalue(), out, mlflow_server
    mp.undo()


def test_console_shows_our_lines_and_the_log_file_holds_rays(toy_run):
    summary, console, _, server = toy_run
    lines = console.splitlines()
    print("\n[console] " + "\n[console] ".join(lines))
    assert all(line.startswith("[ali_dist] ") for line in lines), lines
    start = lines[0]
    assert start.startswith("[ali_dist] run user-toy: 2 worker(s)")
    assert f"MLflow: {server}/#/experiments/{summary['experiment_id']}/runs/" \
           f"{summary['mlflow_run_id']}" in start
    assert f"Ray's output: {summary['log_file']}" in start
    progress = [line for line in lines if line.startswith("[ali_dist] step ")]
    assert [line.split()[2] for line in progress] == \
        [f"{s}/{STEPS}" for s in range(50, STEPS + 1, 50)]
    assert "samples/s | eta " in progress[0]
    evals = [line for line in lines if "eval at step" in line]
    assert len(evals) == 1 and "eval at step 150: modes" in evals[0]   # 300: in the summary
    assert any(line.startswith(f"[ali_dist] done: {STEPS} steps") for line in lines)
    assert lines[-1] == f"[ali_dist] MLflow UI: open {server}/#/experiments/" \
                        f"{summary['experiment_id']}/runs/{summary['mlflow_run_id']}"
    assert len(lines) <= 14
    for noise in ("TrainingReport", "pid=", "INFO", "WARNING", "Traceback"):
        assert noise not in console

    log = Path(summary["log_file"]).read_text()
    assert "(RayTrainWorker pid=" in log and "[ali_dist] step 50/300" in log
    assert log.count("Started training worker group of size 2") == 1
    assert "Reporting training result" not in log      # Train V2's per-report dump: silenced


def test_model_is_an_mlflow_pyfunc_model_that_ali_dist_loads(toy_run):
    import mlflow
    summary, _, _, server = toy_run
    uri = f"runs:/{summary['mlflow_run_id']}/model"
    mlflow.set_tracking_uri(server)
    served = mlflow.pyfunc.load_model(uri)
    (spec,) = served.metadata.signature.inputs.inputs
    assert spec.shape == (-1, 2) and spec.type == np.dtype("float32")
    assert served.metadata.signature.outputs.input_names() == ["z", "reconstruction"]
    x = torch.randn(6, 2)
    out = served.predict(x.numpy())
    assert out["z"].shape == (6, 2) and out["reconstruction"].shape == (6, 2)
    model = ali_dist.load(uri)
    np.testing.assert_allclose(out["reconstruction"], model.reconstruct(x, sample=False).numpy(),
                               atol=1e-5)
    # the model directory holds code, config and weights: nothing is unpickled to load it
    local = tracking.download(uri)
    names = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert {"MLmodel", "pyfunc.py", "artifacts/model/config.json",
            "artifacts/model/weights.pt"} <= names
    assert not any(n.endswith((".pkl", ".pickle", ".cloudpickle")) for n in names)
    assert "loader_module: mlflow.pyfunc.loaders.code_model" in (local / "MLmodel").read_text()


def test_registered_model_and_checkpoints_as_artifacts(toy_run):
    import mlflow
    from mlflow.tracking import MlflowClient
    summary, _, _, server = toy_run
    client = MlflowClient(server)
    (version,) = client.search_model_versions("name = 'ali-toy'")
    assert version.version == "1" and version.run_id == summary["mlflow_run_id"]
    mlflow.set_tracking_uri(server)
    assert mlflow.pyfunc.load_model("models:/ali-toy/1").predict(
        np.zeros((1, 2), np.float32))["z"].shape == (1, 2)

    run_id = summary["mlflow_run_id"]
    steps = [a.path for a in client.list_artifacts(run_id, "checkpoints")]
    assert steps == [f"checkpoints/step_{s:07d}" for s in (100, 200, 300)]
    local = client.download_artifacts(run_id, "checkpoints/step_0000200/state.pt")
    assert torch.load(local, weights_only=True)["step"] == 200


def test_experiment_opens_in_the_training_view(toy_run):
    from mlflow.tracking import MlflowClient
    summary, _, _, server = toy_run
    exp = MlflowClient(server).get_experiment(summary["experiment_id"])
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_ui_in_headless_chromium_shows_the_run_its_charts_and_a_picture(toy_run, tmp_path):
    from ui_screenshots import shoot
    summary, _, _, server = toy_run
    t0 = time.time()
    facts = shoot(server, summary["experiment_id"], summary["mlflow_run_id"], "user-toy",
                  tmp_path, "toy_panels.png")
    print(f"\n[ui] three screenshots in {time.time() - t0:.0f}s")
    assert "user-toy" in facts["run_page"] and "Finished" in facts["run_page"]
    assert "ali-toy" in facts["run_page"]              # the registered model
    assert "loss_d" in facts["metrics_page"] and "Step" in facts["metrics_page"]
    assert "toy_panels.png" in facts["artifact_page"]
    assert facts["image"]["width"] > 500 and facts["image"]["height"] > 100
    for name in ("run.png", "metrics.png", "artifact.png"):
        assert (tmp_path / name).stat().st_size > 20_000


def test_resume_falls_back_past_an_unreadable_checkpoint(toy_run, tmp_path):
    """The newest checkpoint cut short (as a failed copy leaves it): the run says so and
    continues from the one before. On a copy of the run, as a new MLflow run."""
    _, _, out, _ = toy_run
    shutil.copytree(out / "ray" / "user-toy", tmp_path / "ray" / "user-toy")
    (tmp_path / "ray" / "user-toy" / storage.RUN_META).unlink()
    newest, previous = storage.checkpoints(str(tmp_path / "ray"), "user-toy")[:2]
    state = Path(newest) / "state.pt"
    with open(state, "r+b") as f:
        f.truncate(state.stat().st_size // 2)
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        s = run_train(["--preset", "toy", "--cycle", "0", "--workers", "2", "--batch-size", "100", "--steps", "350",
                       "--log-every", "50",
                       "--eval-every", "1000", "--checkpoint-every", "1000", "--storage",
                       str(tmp_path / "ray"), "--name", "user-toy", "--experiment", "user",
                       "--resume"])
    text = console.getvalue()
    print(text)
    assert f"checkpoint {newest} is incomplete or unreadable" in text
    assert f"resuming 'user-toy' from {previous}" in text
    assert "resumed from step 200/350" in text
    assert s["metrics"]["step"] == 350


def test_truncated_shard_stops_the_run_once_with_one_message(tmp_path, ali_home, ray_cluster,
                                                            capfd):
    """Bad input no restart can fix: no retry by Ray's failure policy, the message once (as
    the CLI's last line: SystemExit prints it), the traceback in the log file."""
    import shardkit
    from ali_dist.train import main
    written = shardkit.write(tmp_path / "bad", {"train": 40}, size=32, channels=1)
    shardkit.truncate_in(written["train"].shards[1], "00000019")
    capfd.readouterr()
    t0 = time.time()
    with pytest.raises(SystemExit) as e:
        main(["--preset", "digits", "--data", str(tmp_path / "bad"), "--batch-size", "8",
              "--steps", "20", "--storage", str(tmp_path / "ray"), "--name", "bad",
              "--max-failures", "3"])
    elapsed = time.time() - t0
    out, err = capfd.readouterr()
    message = str(e.value.code)
    print(f"\n[bad shard] stopped after {elapsed:.1f}s: {message}\nconsole:\n{out}{err}")
    assert message.startswith("error: ") and \
        "train-000001.tar: sample '00000019': truncated" in message
    assert "sample '00000019'" not in out + err             # printed once: by SystemExit
    assert out.count("\n") == 1 and out.startswith("[ali_dist] run bad:")
    log = (ali_home / "logs" / "bad.log").read_text()
    assert log.count("Attempting to start training worker group") == 1   # no restart
    assert "sample '00000019': truncated" in log             # the traceback, for who needs it
    assert elapsed < 60
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking.tracking_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("ali-dist").experiment_id])
    assert run.info.status == "FAILED"
