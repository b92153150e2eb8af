"""Logging to MLflow never holds up training and loses nothing: the Tracker's outbox against a
real store, against a server that is not there, and a 2-worker run whose tracking server is
stopped for 60 s and restarted on the same store."""
from __future__ import annotations

import contextlib
import io
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ali_dist import tracking
from helpers import private_home, run_train, start_local_ray


def test_tracker_delivers_everything_in_order(ali_home):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mlflow.tracking import MlflowClient
    ref = tracking.start_run("t", "outbox", {"a": 1}, {"k": "v"})
    tracker = tracking.Tracker(ref)
    t0 = time.perf_counter()
    for step in range(1, 301):
        tracker.metrics({"x": step, "y": -step}, step)
    tracker.tag("note", "hello")
    tracker.image(np.zeros((8, 8, 3), np.uint8), "grids/step_1.png")
    tracker.text("some text", "notes/a.txt")
    fig = plt.figure()
    tracker.figure(fig, "fig.png")
    plt.close(fig)
    queued = time.perf_counter() - t0
    tracker.close()
    client = MlflowClient(ref.tracking_uri)
    assert [m.step for m in client.get_metric_history(ref.run_id, "x")] == list(range(1, 301))
    assert client.get_metric_history(ref.run_id, "y")[-1].value == -300
    assert client.get_run(ref.run_id).data.tags["note"] == "hello"
    arts = {a.path for d in (None, "grids", "notes") for a in client.list_artifacts(ref.run_id, d)}
    assert {"fig.png", "grids/step_1.png", "notes/a.txt"} <= arts
    assert queued < 2.0          # 303 calls queued: no call waited for the store


def test_tracker_against_an_absent_server_never_blocks_and_warns_once(monkeypatch):
    with __import__("socket").socket() as s:        # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    said: list[str] = []
    ref = tracking.RunRef(f"http://127.0.0.1:{port}", "0" * 32, "0")
    tracker = tracking.Tracker(ref, warn=said.append)
    slowest = 0.0
    for step in range(200):
        t = time.perf_counter()
        tracker.metrics({"x": step}, step)
        slowest = max(slowest, time.perf_counter() - t)
        time.sleep(0.01)
    tracker.close(timeout=1)
    assert slowest < 0.05
    unreachable = [m for m in said if "unreachable" in m]
    assert len(unreachable) == 1 and "training goes on" in unreachable[0]
    assert any("could not be delivered" in m for m in said)


@pytest.mark.slow
def test_tracking_server_outage_neither_stalls_training_nor_loses_a_metric(tmp_path):
    """Two Ray workers train the toy; once the first metrics are in, the tracking server is
    stopped for 20 s and then restarted on the same store and port. The run finishes
    FINISHED with every logged step exactly once, and no step waited on the outage."""
    from mlflow.tracking import MlflowClient
    from ui_screenshots import TrackingServer
    outage_s, steps, every = 20, 600, 50
    server = TrackingServer(Path(tempfile.mkdtemp(prefix="mlfo", dir="/tmp"))).start()
    start_local_ray()
    mp = private_home(tmp_path / "home")
    mp.setenv("MLFLOW_TRACKING_URI", server.url)
    result: dict = {}
    console = io.StringIO()

    def drive():
        try:
            with contextlib.redirect_stdout(console):
                result["summary"] = run_train([
                    "--preset", "toy", "--workers", "2", "--steps", str(steps),
                    "--log-every", str(every), "--eval-every", "100000",
                    "--checkpoint-every", "500", "--storage", str(tmp_path / "ray"),
                    "--name", "outage", "--experiment", "outage"])
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            result["error"] = e

    t = threading.Thread(target=drive)
    t0 = time.time()
    try:
        t.start()
        client = MlflowClient(server.url)
        deadline = time.time() + 300
        while True:  # the first metrics have arrived: the run is under way
            assert time.time() < deadline and t.is_alive(), result
            exp = client.get_experiment_by_name("outage")
            runs = client.search_runs([exp.experiment_id]) if exp else []
            if runs and client.get_metric_history(runs[0].info.run_id, "loss_d"):
                run_id = runs[0].info.run_id
                break
            time.sleep(0.5)
        server.stop()
        stopped = time.time()
        time.sleep(outage_s)
        server.start()
        back = time.time()
        t.join(900)
        assert not t.is_alive(), "training did not end"
        assert "error" not in result, result.get("error")
        summary = result["summary"]
        run = client.get_run(run_id)
        hist = client.get_metric_history(run_id, "loss_d")
        gaps = client.get_metric_history(run_id, "step_gap_max_s")
    finally:
        mp.undo()
        server.stop()
    assert summary["mlflow_run_id"] == run_id and run.info.status == "FINISHED"
    logged = [m.step for m in hist]
    assert sorted(logged) == list(range(every, steps + 1, every)), logged   # each once
    during = [m for m in hist if stopped <= m.timestamp / 1000 <= back]
    stall = max(g.value for g in gaps if stopped <= g.timestamp / 1000 <= back)
    stall_all = max(g.value for g in gaps)
    text = console.getvalue()
    print(f"\n[outage] server down {back - stopped:.0f}s (stopped {outage_s}s, then "
          f"{back - stopped - outage_s:.0f}s to restart); {len(hist)} steps logged, "
          f"{len(during)} of them measured while it was down; longest gap between two "
          f"training steps during the outage {stall:.2f}s (whole run {stall_all:.2f}s); "
          f"training {summary['seconds']:.0f}s, test {time.time() - t0:.0f}s\n{text}")
    assert len(during) >= 3               # training went on while the server was away
    assert stall < 10 < outage_s          # and no step waited for it
    assert text.count("is unreachable") == 1, text
    assert "answers again" in text
