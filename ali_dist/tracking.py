"""MLflow: where runs go, what is logged, from which process. The one place that imports mlflow.

The driver (`train.py`) opens the run, logs the config as parameters and the tags, and passes
`RunRef` to the workers; rank 0 logs metrics and artifacts into that run by id. One MLflow run
per training job, resumed runs included (the run id is kept beside the Ray checkpoints).
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = Path(os.environ.get("ALI_DIST_HOME", "~/.cache/ali_dist")).expanduser()


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else a SQLite store at an absolute path (MLflow's file store
    is off, and a relative sqlite URI would differ between the driver and Ray workers)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    DEFAULT_HOME.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DEFAULT_HOME / 'mlflow.db'}"


def artifact_location(experiment: str) -> str | None:
    """Explicit artifact root for the local SQLite store (a server chooses its own)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    return (DEFAULT_HOME / "mlartifacts" / experiment).as_uri()


@dataclass
class RunRef:
    """What a worker needs to log into the driver's run."""
    tracking_uri: str
    run_id: str
    experiment_id: str


def _client(uri: str):
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=uri)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def start_run(experiment: str, run_name: str, params: dict, tags: dict,
              run_id: str | None = None) -> RunRef:
    """Open (or, with `run_id`, reopen) the job's run; log parameters and tags once."""
    uri = tracking_uri()
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(
        experiment, artifact_location=artifact_location(experiment))
    if run_id is None:
        run = client.create_run(exp_id, run_name=run_name, tags=tags)
        run_id = run.info.run_id
        from mlflow.entities import Param
        items = [Param(k, "None" if v is None else str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            client.log_batch(run_id, params=items[i:i + 100])
    else:
        client.update_run(run_id, status="RUNNING")
        for k, v in tags.items():
            client.set_tag(run_id, k, v)
    return RunRef(uri, run_id, exp_id)


def end_run(ref: RunRef, status: str = "FINISHED") -> None:
    _client(ref.tracking_uri).set_terminated(ref.run_id, status=status)


class Tracker:
    """Rank 0's logger. Other ranks get `Tracker(None)`, which logs nothing."""

    def __init__(self, ref: RunRef | None):
        self.ref = ref
        self.client = _client(ref.tracking_uri) if ref else None

    def metrics(self, values: dict[str, float], step: int) -> None:
        if not self.client:
            return
        import time

        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        self.client.log_batch(self.ref.run_id, metrics=[
            Metric(k, float(v), now, step) for k, v in values.items()])

    def tag(self, key: str, value: str) -> None:
        if self.client:
            self.client.set_tag(self.ref.run_id, key, value)

    def figure(self, fig, name: str) -> None:
        """A matplotlib figure as PNG under artifacts/<name>."""
        if self.client:
            self.client.log_figure(self.ref.run_id, fig, name)

    def image(self, array, name: str) -> None:
        """An HxWxC uint8 array as PNG under artifacts/<name>."""
        if self.client:
            self.client.log_image(self.ref.run_id, array, artifact_file=name)

    def artifacts(self, local_dir: str | Path, path: str | None = None) -> None:
        if self.client:
            self.client.log_artifacts(self.ref.run_id, str(local_dir), path)

    def text(self, text: str, name: str) -> None:
        if self.client:
            self.client.log_text(self.ref.run_id, text, name)


def download(uri: str) -> Path:
    """`runs:/<id>/model` or any MLflow artifact URI -> a local directory."""
    import mlflow.artifacts
    return Path(mlflow.artifacts.download_artifacts(
        artifact_uri=uri, dst_path=tempfile.mkdtemp(prefix="ali_"), tracking_uri=tracking_uri()))
