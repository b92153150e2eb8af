"""`ray job submit --working-dir . -- python -m ali_dist.train ...` against a real head with
token authentication on (as users have it), logging into a real MLflow tracking server."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, seconds: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered (a token-protected dashboard says 401): it is up
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer in {seconds}s: {log.read_text()[-3000:]}")


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    # its own process group, so the test stops this cluster and nothing else on the machine
    return subprocess.Popen(args, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_job_submission_with_token_auth_logs_to_the_mlflow_server(mlflow_server):
    from mlflow.tracking import MlflowClient
    work = Path(tempfile.mkdtemp(prefix="rj", dir="/tmp"))  # short: Ray's socket paths
    token = secrets.token_hex(24)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
           "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "120"}
    env.pop("RAY_ADDRESS", None)
    gcs, dash = _port(), _port()
    # Every port the head opens is a free one: the agents' defaults (52365 and others) are
    # taken whenever another Ray runs on the machine (the test session's own local cluster),
    # and a head whose job agent cannot bind answers "No available agent" to every submission.
    ports = [f"--{name}={_port()}" for name in (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
        "metrics-export-port", "ray-client-server-port")]
    head_log = work / "head.log"
    head = _start([str(BIN / "ray"), "start", "--head", "--block", "--port", str(gcs),
                   "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1",
                   "--dashboard-port", str(dash), *ports, "--num-cpus", "4", "--temp-dir",
                   str(work / "ray"), "--disable-usage-stats"], env, head_log)
    address = f"http://127.0.0.1:{dash}"
    try:
        _wait_http(f"{address}/api/version", 180, head, head_log)
        # a client without the token is turned away
        no_token = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"}
        no_token["HOME"] = str(work)  # and no ~/.ray/auth_token to fall back on
        denied = subprocess.run([str(BIN / "ray"), "job", "list", "--address", address],
                                env=no_token, capture_output=True, text=True, timeout=120)
        assert denied.returncode != 0
        assert "token" in (denied.stdout + denied.stderr).lower()

        # the dashboard answers before the head's job agent registers: "No available agent to
        # submit job" is Ray's word for "not yet", so submit again until it takes the job
        # (bounded: an agent that never comes is a failure, with the head's log to show why)
        runtime_env = {"env_vars": {"MLFLOW_TRACKING_URI": mlflow_server,
                                    "ALI_DIST_HOME": str(work / "home")}}  # its log file
        deadline = time.time() + 180
        for attempt in range(1, 1000):
            job_id = f"ali-job-{attempt}"
            submit = subprocess.run(
                [str(BIN / "ray"), "job", "submit", "--address", address, "--submission-id",
                 job_id, "--working-dir", str(REPO), "--runtime-env-json",
                 json.dumps(runtime_env), "--", "python", "-m", "ali_dist.train",
                 "--preset", "toy", "--method", "gan_posthoc", "--workers", "2",
                 "--steps", "100", "--log-every", "50", "--eval-every", "100",
                 "--name", "job1", "--experiment", "jobs",
                 "--storage", str(work / "storage")],
                env=env, capture_output=True, text=True, timeout=600)
            if "No available agent" not in submit.stdout + submit.stderr \
                    or time.time() > deadline:
                break
            time.sleep(5)
        assert submit.returncode == 0, (submit.stdout[-3000:] + submit.stderr[-3000:]
                                        + "\nhead log:\n" + head_log.read_text()[-3000:])
        # post-hoc inference: 100 GAN steps, then half as many for its encoder and joint D
        assert "[ali_dist] step 150/150" in submit.stdout
        status = subprocess.run([str(BIN / "ray"), "job", "status", "--address", address,
                                 job_id], env=env, capture_output=True, text=True,
                                timeout=120)
        assert "succeeded" in (status.stdout + status.stderr).lower()
    finally:
        _stop(head)
        shutil.rmtree(work, ignore_errors=True)

    client = MlflowClient(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("jobs").experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "job1"
    assert run.data.tags["world_size"] == "2"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss_d")] == \
        [50, 100, 150]
    assert "modes_paper" in run.data.metrics and "recon_ratio" in run.data.metrics  # encodes
    assert run.data.tags["method"] == "gan_posthoc"
    models = client.search_logged_models([run.info.experiment_id],
                                         filter_string=f"source_run_id = '{run.info.run_id}'")
    assert [m.name for m in models] == ["model"]
