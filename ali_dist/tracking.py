"""MLflow: where runs go, what is logged, from which process. The one place that imports mlflow
(besides `pyfunc.py`, the file MLflow itself executes to load a logged model).

The driver (`train.py`) opens the run, logs the config as parameters and the tags, and passes
`RunRef` to the workers; rank 0 logs metrics and artifacts into that run by id. One MLflow run
per training job, resumed runs included (the run id is kept beside the Ray checkpoints).

Logging never holds up training: a `Tracker` hands every call to a background thread (its
outbox) that delivers them in order and retries until the server answers. A metric keeps the
timestamp of the moment it was logged, so a batch sent twice (the server stored it, the answer
was lost) is one row in MLflow, not two.
"""
from __future__ import annotations

import collections
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

DEFAULT_HOME = Path(os.environ.get("ALI_DIST_HOME", "~/.cache/ali_dist")).expanduser()

# The UI reads this experiment tag to choose its layout: without it MLflow 3 opens runs in the
# GenAI view (traces, prompts); with it, in the training view with metric charts.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
MODEL_NAME = "model"           # runs:/<run id>/model
MODEL_ARTIFACT = "ali_model"   # the key of the exported directory inside the MLflow model


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else a SQLite store at an absolute path (MLflow's file store
    is off, and a relative sqlite URI would differ between the driver and Ray workers)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    DEFAULT_HOME.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DEFAULT_HOME / 'mlflow.db'}"


def is_local(uri: str) -> bool:
    """A store only this machine can write: a SQLite file, MLflow's file store or a path."""
    return "://" not in uri or uri.split("://", 1)[0].lower() in ("sqlite", "file")


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
    if not exp or EXPERIMENT_KIND[0] not in exp.tags:  # a kind someone chose stays
        client.set_experiment_tag(exp_id, *EXPERIMENT_KIND)
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
    """Deliver what this process's trackers still hold for the run, then close it."""
    for t in list(_open_trackers):
        if t.ref and t.ref.run_id == ref.run_id:
            t.close()
    with contextlib.redirect_stdout(sys.stderr):   # MLflow prints the run's links on stdout
        _client(ref.tracking_uri).set_terminated(ref.run_id, status=status)


def run_url(ref: RunRef, base: str) -> str:
    """The run's page in the MLflow UI served at `base`."""
    return f"{base.rstrip('/')}/#/experiments/{ref.experiment_id}/runs/{ref.run_id}"


def ui_command(ref: RunRef, port: int = 5000) -> str:
    """The one command that shows this run: a server's URL, or `mlflow ui` on a local store."""
    if not is_local(ref.tracking_uri):
        return f"open {run_url(ref, ref.tracking_uri)}"
    return (f"mlflow ui --backend-store-uri {ref.tracking_uri} --host 127.0.0.1 --port {port}  "
            f"# then open {run_url(ref, f'http://127.0.0.1:{port}')}")


# ---- logging from training: non-blocking, in order, retried -----------------------------------

_open_trackers: "set[Tracker]" = set()


def _default_warn(msg: str) -> None:
    warnings.warn(msg, RuntimeWarning, stacklevel=2)


class Tracker:
    """Rank 0's logger. Other ranks get `Tracker(None)`, which logs nothing.

    Every call returns at once: pictures and files are written to a private spool directory
    here (matplotlib is not thread-safe), and the MLflow calls are made by the outbox thread.
    `flush()` waits for delivery; `close()` flushes and stops the thread. `warn` receives the
    one line that says the server stopped answering (and the one that says it is back)."""

    def __init__(self, ref: RunRef | None, warn: Callable[[str], None] | None = None):
        self.ref = ref
        self._outbox = _Outbox(ref, warn or _default_warn) if ref else None
        if ref:
            _open_trackers.add(self)

    def metrics(self, values: dict[str, float], step: int) -> None:
        if not self._outbox:
            return
        from mlflow.entities import Metric
        now = int(time.time() * 1000)   # the measurement's time, kept through retries
        self._outbox.put(("batch", [Metric(k, float(v), now, step) for k, v in values.items()],
                          []))

    def tag(self, key: str, value: str) -> None:
        if self._outbox:
            from mlflow.entities import RunTag
            self._outbox.put(("batch", [], [RunTag(key, str(value)[:5000])]))

    def figure(self, fig, name: str) -> None:
        """A matplotlib figure as PNG under artifacts/<name>."""
        if self._outbox:
            path = self._outbox.spool_path(name)
            fig.savefig(path, format="png")
            self._outbox.put(("file", path, name))

    def image(self, array, name: str) -> None:
        """An HxWxC (or HxW) uint8 array as PNG under artifacts/<name>."""
        if self._outbox:
            from PIL import Image
            path = self._outbox.spool_path(name)
            Image.fromarray(array).save(path, format="PNG")
            self._outbox.put(("file", path, name))

    def artifacts(self, local_dir: str | Path, path: str | None = None) -> None:
        """A directory's files under artifacts/<path>/ (copied now: the caller may delete it)."""
        if self._outbox:
            copy = self._outbox.spool_path(f"{path or ''}/.dir{time.monotonic_ns()}")
            shutil.copytree(local_dir, copy)
            self._outbox.put(("dir", copy, path))

    def text(self, text: str, name: str) -> None:
        if self._outbox:
            path = self._outbox.spool_path(name)
            path.write_text(text)
            self._outbox.put(("file", path, name))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything logged so far is in MLflow; False if `timeout` ran out."""
        return self._outbox.flush(timeout) if self._outbox else True

    def close(self, timeout: float = 600.0) -> None:
        """Flush (up to `timeout` seconds: a server that never returns must not hang the run
        forever), stop the outbox thread, remove the spool."""
        if self._outbox:
            self._outbox.close(timeout)
            _open_trackers.discard(self)


# Error codes with which MLflow refuses a request for good; anything else (connection refused,
# timeouts, 5xx, 429) is the server being away, and is retried.
_PERMANENT = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS",
              "PERMISSION_DENIED", "UNAUTHENTICATED", "BAD_REQUEST", "INVALID_STATE"}
MAX_PENDING = 100_000          # queued calls; beyond this the oldest are dropped (and counted)
STALL_S = 10.0                 # a call unanswered this long counts as an outage
RETRY_MAX_S = 10.0             # the longest wait between two tries


def _reason(e: Exception) -> str:
    """A transport error in a few words (MLflow's message embeds urllib3's whole chain)."""
    text = str(e)
    for words, short in (("Connection refused", "connection refused"),
                         ("timed out", "timed out"), ("Timeout", "timed out"),
                         ("Name or service not known", "unknown host"),
                         ("RemoteDisconnected", "connection closed"),
                         ("Connection reset", "connection reset")):
        if words in text:
            return short
    return text.splitlines()[0][:160] if text else type(e).__name__


class _Outbox:
    """One background thread making a run's MLflow calls in the order they were given."""

    def __init__(self, ref: RunRef, warn: Callable[[str], None]):
        self.ref, self._warn = ref, warn
        self.client = _client(ref.tracking_uri)
        self.spool = Path(tempfile.mkdtemp(prefix="ali_mlflow_"))
        self._ops: collections.deque = collections.deque()
        self._cv = threading.Condition()
        self._inflight = 0
        self._busy_since: float | None = None   # when the call in flight was first tried
        self._outage_since: float | None = None
        self._closing = False
        self._give_up_at = float("inf")
        self.dropped = 0
        self.outages = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name="ali-mlflow-outbox")
        self._thread.start()

    def spool_path(self, name: str) -> Path:
        path = self.spool / f"{time.monotonic_ns()}" / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def put(self, op: tuple) -> None:
        with self._cv:
            if len(self._ops) >= MAX_PENDING:
                self._ops.popleft()
                self.dropped += 1
            self._ops.append(op)
            self._cv.notify_all()
        busy = self._busy_since
        if busy is not None and time.monotonic() - busy > STALL_S:
            self._outage(f"no answer for {time.monotonic() - busy:.0f}s")

    def _outage(self, why: str) -> None:
        with self._cv:
            if self._outage_since is not None:
                return
            self._outage_since = time.monotonic()
            self.outages += 1
        self._warn(f"warning: MLflow at {self.ref.tracking_uri} is unreachable ({why}); "
                   f"training goes on and its metrics are kept until the server answers")

    def _take(self) -> tuple:
        """The next call; consecutive metric/tag batches merge (MLflow's limits: 1000 metrics
        and 100 tags a request)."""
        op = self._ops.popleft()
        if op[0] != "batch":
            return op
        metrics, tags = list(op[1]), list(op[2])
        while self._ops and self._ops[0][0] == "batch" \
                and len(metrics) + len(self._ops[0][1]) <= 1000 \
                and len(tags) + len(self._ops[0][2]) <= 100:
            _, m, t = self._ops.popleft()
            metrics += m
            tags += t
        return ("batch", metrics, tags)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._ops and not self._closing:
                    self._cv.wait()
                if not self._ops:
                    return
                op = self._take()
                self._inflight += 1
            try:
                self._deliver(op)
            finally:
                with self._cv:
                    self._inflight -= 1
                    self._cv.notify_all()

    def _send(self, op: tuple) -> None:
        kind, a, b = op
        if kind == "batch":
            self.client.log_batch(self.ref.run_id, metrics=a, tags=b, synchronous=True)
        elif kind == "file":
            parent = str(Path(b).parent)
            self.client.log_artifact(self.ref.run_id, str(a), None if parent == "." else parent)
        else:
            self.client.log_artifacts(self.ref.run_id, str(a), b)

    def _deliver(self, op: tuple) -> None:
        wait = 1.0
        self._busy_since = time.monotonic()
        try:
            while True:
                try:
                    self._send(op)
                    break
                except Exception as e:  # noqa: BLE001 - sorted into permanent and transient
                    if getattr(e, "error_code", None) in _PERMANENT:
                        self._warn(f"warning: MLflow refused a {op[0]} for run "
                                   f"{self.ref.run_id}: {e}")
                        break
                    self._outage(_reason(e))
                    if time.monotonic() + wait > self._give_up_at:
                        with self._cv:
                            self.dropped += 1
                        return
                    time.sleep(wait)
                    wait = min(RETRY_MAX_S, wait * 2)
        finally:
            self._busy_since = None
        with self._cv:
            since, self._outage_since = self._outage_since, None
        if since is not None:
            self._warn(f"MLflow at {self.ref.tracking_uri} answers again after "
                       f"{time.monotonic() - since:.0f}s; sending what was kept")
        if op[0] in ("file", "dir"):
            shutil.rmtree(Path(op[1]).parent if op[0] == "file" else op[1],
                          ignore_errors=True)

    def flush(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while self._ops or self._inflight:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def close(self, timeout: float) -> None:
        self._give_up_at = time.monotonic() + timeout
        done = self.flush(timeout)
        with self._cv:
            self._closing = True
            lost = len(self._ops) + self._inflight
            self._ops.clear()
            self._cv.notify_all()
        self._thread.join(5)
        if not done or self.dropped:
            self._warn(f"warning: {lost + self.dropped} MLflow call(s) for run "
                       f"{self.ref.run_id} could not be delivered to {self.ref.tracking_uri}")
        shutil.rmtree(self.spool, ignore_errors=True)


# ---- models ------------------------------------------------------------------------------------

def log_model(ref: RunRef, model_dir: str | Path, register: str | None = None) -> str:
    """The exported model (config.json + weights.pt) as an MLflow pyfunc model named "model"
    of the run: MLflow's "models from code" (`pyfunc.py` is the model's code, the directory its
    one artifact), so loading it executes no pickle. Registered as `register` when given.
    Returns the logged model's URI."""
    import mlflow

    from . import api
    signature, example = _signature(api.load(model_dir))
    mlflow.set_tracking_uri(ref.tracking_uri)
    # MLflow prints links to the run on stdout when a run ends: the console has its own, and
    # MLflow's other chatter goes to stderr (the log file, in a quiet run)
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        with mlflow.start_run(run_id=ref.run_id, log_system_metrics=False):
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME, python_model=str(Path(__file__).with_name("pyfunc.py")),
                artifacts={MODEL_ARTIFACT: str(model_dir)}, signature=signature,
                input_example=example, registered_model_name=register,
                pip_requirements=_requirements())
    return info.model_uri


def _signature(model):
    """What `pyfunc.py`'s predict takes and returns, and a small input example: float32 images
    (N, C, H, W) in [0, 1] (vectors (N, D) for the toy) -> their mean codes z and the decoded
    reconstructions; for a model without an encoder, codes z -> decoded x. HALI: z is z2 (the
    top latent). A conditional model takes named inputs {"x" (or "z"), "y"}: y float32
    (N, classes) one-hot or (N, attributes) 0/1."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec
    p, f32 = model.preset, np.dtype("float32")
    x = (-1, p.channels, p.image_size, p.image_size) if p.is_image else (-1, p.data_dim)
    z = (-1, model.z_dim)
    y = (-1, model.y_dim)
    if getattr(model, "encoder", None) is None:
        inputs, outputs, example = z, [TensorSpec(f32, x, "x")], np.zeros((2, *z[1:]), f32)
        name = "z"
    else:
        inputs, name = x, "x"
        outputs = [TensorSpec(f32, z, "z"), TensorSpec(f32, x, "reconstruction")]
        example = np.full((2, *x[1:]), 0.5, f32)
    if not model.conditional:
        return ModelSignature(Schema([TensorSpec(f32, inputs)]), Schema(outputs)), example
    y_example = np.zeros((2, model.y_dim), f32)
    y_example[:, 0] = 1
    return (ModelSignature(Schema([TensorSpec(f32, inputs, name), TensorSpec(f32, y, "y")]),
                           Schema(outputs)),
            {name: example, "y": y_example})


def _requirements() -> list[str]:
    """What the model needs where it is served (ali_dist itself: this package, installed)."""
    import mlflow
    import torch
    return [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
            "numpy", "pyyaml"]


def download(uri: str) -> Path:
    """`runs:/<id>/model` or any MLflow artifact URI -> a local directory."""
    import mlflow.artifacts
    return Path(mlflow.artifacts.download_artifacts(
        artifact_uri=uri, dst_path=tempfile.mkdtemp(prefix="ali_"), tracking_uri=tracking_uri()))
