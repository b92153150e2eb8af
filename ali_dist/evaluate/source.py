"""What `python -m ali_dist.evaluate RUN` evaluates: RUN -> the model's directory, its saved
config, and the MLflow run it belongs to (when there is one).

RUN may be
  - an MLflow run id (32 hex digits) or a `runs:/<id>[/path]` URI (default path: `model`),
  - a training run's directory in Ray storage (`<storage>/<name>`: its exported `model/`, else
    its newest checkpoint),
  - an exported model directory (`--output`: config.json + weights.pt) or a checkpoint
    directory (state.pt), or the state.pt file itself.
For directories the MLflow run is the one recorded beside the checkpoints
(`storage.RUN_META`), in the directory itself or its parent.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .. import checkpoint, storage, tracking

RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class Source:
    model_dir: Path              # config.json + weights.pt, or state.pt
    config: dict                 # the run's saved config
    run: tracking.RunRef | None  # the MLflow run to log into
    step: int | None             # the training step of the weights, where known
    name: str                    # for titles


def _run_ref(run_id: str, uri: str | None = None) -> tracking.RunRef:
    from mlflow.tracking import MlflowClient
    uri = uri or tracking.tracking_uri()
    try:
        run = MlflowClient(tracking_uri=uri).get_run(run_id)
    except Exception as e:  # noqa: BLE001 - MLflow raises its own types for "no such run"
        raise FileNotFoundError(f"no MLflow run {run_id} in {uri}: {e}") from None
    return tracking.RunRef(uri, run_id, run.info.experiment_id)


def _meta_ref(directory: Path) -> tracking.RunRef | None:
    for d in (directory, directory.parent):
        meta = d / storage.RUN_META
        if meta.is_file():
            m = json.loads(meta.read_text())
            if m.get("mlflow_run_id"):
                return _run_ref(m["mlflow_run_id"], m.get("tracking_uri"))
    return None


def _model_in_run_dir(directory: Path) -> Path | None:
    """A Ray storage run directory's exported model, else its newest readable checkpoint."""
    if (directory / "model" / checkpoint.CONFIG).is_file():
        return directory / "model"
    newest = storage.latest_checkpoint(str(directory.parent), directory.name)
    return Path(newest) if newest else None


def resolve(run: str, mlflow: bool = True) -> Source:
    """RUN (see the module docstring) -> Source. `mlflow=False`: no MLflow lookups at all
    for paths (a run id or URI still needs MLflow to find the model)."""
    uri_run = run[len("runs:/"):].split("/", 1) if run.startswith("runs:/") else None
    if uri_run or RUN_ID.match(run):
        run_id = uri_run[0] if uri_run else run
        path = uri_run[1] if uri_run and len(uri_run) > 1 and uri_run[1] else \
            tracking.MODEL_NAME
        ref = _run_ref(run_id)
        directory = tracking.download(f"runs:/{run_id}/{path}")
        cfg, _ = checkpoint.read_model_dir(directory)
        return Source(checkpoint.exported_dir(directory), cfg, ref if mlflow else None, None,
                      _run_name(ref) or run_id[:8])
    p = Path(run).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{run}: neither an MLflow run id, a runs:/ URI nor a path")
    if p.is_file():
        p = p.parent
    model_dir = p
    if not any((p / f).is_file() for f in (checkpoint.CONFIG, checkpoint.STATE, "MLmodel")):
        model_dir = _model_in_run_dir(p)
        if model_dir is None:
            raise FileNotFoundError(f"{p} holds no model, checkpoint or training run")
    cfg, _ = checkpoint.read_model_dir(model_dir)
    step = None
    if (model_dir / checkpoint.STATE).is_file():
        step = int(checkpoint.load_state(model_dir).get("step", 0)) or None
    ref = _meta_ref(model_dir) if mlflow else None
    name = cfg.get("run", {}).get("name") or p.name
    return Source(checkpoint.exported_dir(model_dir), cfg, ref, step, name)


def _run_name(ref: tracking.RunRef) -> str | None:
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=ref.tracking_uri).get_run(ref.run_id).info.run_name


def last_step(ref: tracking.RunRef) -> int:
    """The last training step the run logged (evaluations are logged at it)."""
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=ref.tracking_uri)
    keys = client.get_run(ref.run_id).data.metrics
    for key in ("lr", "epoch", *keys):
        if key in keys:
            return max((m.step for m in client.get_metric_history(ref.run_id, key)), default=0)
    return 0
