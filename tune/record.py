"""MLflow for studies: one parent run per study, one child run per trial (tagged
`mlflow.parentRunId`, so the MLflow UI nests them), and the study's artifacts on the parent.

Trials log their metrics and figures into their child run themselves (the training loop's
`Tracker`); a trial that Tune restarts (after a failure or `Tuner.restore`) finds its child run
again by its `trial_id` tag and continues it instead of opening a second one.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

from ali_dist import tracking

PARENT_TAG = "mlflow.parentRunId"     # MLflow's own nesting tag
TRIAL_TAG = "trial_id"


@dataclasses.dataclass
class StudyRef:
    """What every trial needs to log into the study (plain data: it travels in Tune configs)."""
    name: str
    experiment: str
    tracking_uri: str
    parent_run_id: str
    experiment_id: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _client(uri: str):
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=uri)


def start_parent(name: str, experiment: str, params: dict, tags: dict,
                 run_id: str | None = None) -> StudyRef:
    """Open the study's run (or reopen it, on resume)."""
    ref = tracking.start_run(experiment, name, params, tags, run_id=run_id)
    return StudyRef(name, experiment, ref.tracking_uri, ref.run_id, ref.experiment_id)


def child_run(study: dict, trial_id: str, run_name: str, params: dict,
              tags: dict) -> tracking.RunRef:
    """The trial's child run: found again by trial id, else created under the parent.
    Called inside the trial's process, which may not have inherited the driver's env."""
    study = StudyRef(**study)
    os.environ["MLFLOW_TRACKING_URI"] = study.tracking_uri
    existing = _client(study.tracking_uri).search_runs(
        [study.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{study.parent_run_id}' and "
                      f"tags.{TRIAL_TAG} = '{trial_id}'", max_results=1)
    tags = {**tags, PARENT_TAG: study.parent_run_id, TRIAL_TAG: trial_id, "study": study.name}
    return tracking.start_run(study.experiment, run_name, params, tags,
                              run_id=existing[0].info.run_id if existing else None)


def children(study: StudyRef) -> list:
    """Every child run of the study (mlflow Run objects)."""
    return _client(study.tracking_uri).search_runs(
        [study.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{study.parent_run_id}'",
        max_results=10_000)


def close_children(study: StudyRef, completed: set[str], stopped_early: set[str]) -> None:
    """Close the children of trials that Tune ended from outside: ASHA stopped them (tagged
    `stopped_early`), a scheduler stopped them at their last step (`completed`), or the driver
    died. The first two count as finished even where the trial, interrupted inside its
    training, marked its own run FAILED on the way out; runs still RUNNING otherwise count as
    killed."""
    client = _client(study.tracking_uri)
    for run in children(study):
        trial = run.data.tags.get(TRIAL_TAG)
        done = trial in stopped_early or trial in completed
        if run.info.status == "FINISHED" or (run.info.status != "RUNNING" and not done):
            continue
        if trial in stopped_early:
            client.set_tag(run.info.run_id, "stopped_early", "true")
        client.set_terminated(run.info.run_id, "FINISHED" if done else "KILLED")


def log_study(study: StudyRef, files: dict[str, str], metrics: dict[str, float],
              figures: dict[str, object], images: dict[str, Path] | None = None,
              params: dict | None = None, status: str = "FINISHED") -> None:
    """Study-level artifacts on the parent run, then close it: text files and image files
    (by artifact path), summary metrics, matplotlib figures, and extra parameters (the best
    configuration; a resumed study may already hold them, so existing keys are skipped)."""
    ref = tracking.RunRef(study.tracking_uri, study.parent_run_id, study.experiment_id)
    tracker = tracking.Tracker(ref)
    client = _client(study.tracking_uri)
    for name, text in files.items():
        tracker.text(text, name)
    for name, local in (images or {}).items():
        d = Path(tempfile.mkdtemp(prefix="ali_art_"))
        target = d / Path(name).name
        target.write_bytes(Path(local).read_bytes())
        parent = str(Path(name).parent)
        client.log_artifact(study.parent_run_id, str(target),
                            None if parent in ("", ".") else parent)
    if params:
        have = client.get_run(study.parent_run_id).data.params
        for k, v in params.items():
            if k not in have:
                client.log_param(study.parent_run_id, k, str(v)[:6000])
    if metrics:
        tracker.metrics(metrics, 0)
    for name, fig in figures.items():
        tracker.figure(fig, name)
    tracking.end_run(ref, status)


def download_artifact(uri: str, run_id: str, path: str) -> Path | None:
    """One artifact of a run as a local file, or None if the run has none by that name."""
    try:
        local = _client(uri).download_artifacts(run_id, path, tempfile.mkdtemp(prefix="ali_"))
    except Exception:  # mlflow raises several types for a missing artifact
        return None
    p = Path(local)
    return p if p.is_file() else None


def to_json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)
