"""What each Ray Train worker runs: the only module that talks to `ray.train`.

Ray Train starts one process per worker and the process group (gloo on CPU, NCCL on GPU);
this adapter restores the newest checkpoint (Ray's after a failure, or the driver's on
`--resume`), runs `loop.run`, and turns its reports into `ray.train.report` calls. Every rank
reports (Ray Train V2 expects it); rank 0 attaches the checkpoint, logs to MLflow, and (under
the training CLI) prints each report as one line for the driver's console (`console.py`).
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

import torch

from . import checkpoint, loop
from .config import Config
from .console import report_line
from .tracking import RunRef, Tracker


def _not_a_report_dump(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Reporting training result")


def train_func(loop_config: dict) -> None:
    import ray.train
    import ray.train.torch

    # Train V2 logs each report at INFO, "Reporting training result N: TrainingReport(...)":
    # every metric of every rank, every interval. The reports are ours (MLflow, the console).
    try:   # that module's logger (named after its file), where the line is made
        from ray.train.v2._internal.execution import context as _train_context
        _train_context.logger.addFilter(_not_a_report_dump)
    except (ImportError, AttributeError):
        pass

    cfg = Config.from_dict(loop_config["config"])
    ref = RunRef(**loop_config["mlflow"]) if loop_config.get("mlflow") else None
    rank = ray.train.get_context().get_world_rank()
    console = bool(loop_config.get("console")) and rank == 0
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(cfg.run.cpus_per_worker)))

    # After a failure inside this run Ray hands over its newest checkpoint; on `--resume` the
    # driver names the newest one in storage that loads (Train V2 may also offer the run's
    # newest from its own records: not when the driver found that one unreadable).
    restored = None
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None and ckpt.path.rstrip("/").rsplit("/", 1)[-1] in \
            loop_config.get("skip_checkpoints", ()):
        ckpt = None
    if ckpt is None and loop_config.get("resume_from"):
        ckpt = ray.train.Checkpoint(loop_config["resume_from"])
    if ckpt is not None:
        with ckpt.as_directory() as d:
            restored = checkpoint.load_state(d)

    # Rank 0's MLflow calls run in the tracker's background thread, which retries on its own
    # (every 1-10 s, for as long as it takes): MLflow's retries inside each call (7, backing
    # off for minutes) would only delay seeing that the server is back. A user's setting wins.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    tracker = Tracker(ref if rank == 0 else None, warn=loop.say)

    def report(metrics: dict, state: dict | None) -> None:
        if console:  # the process's real stdout: Ray forwards it to the driver
            print(report_line(metrics), file=sys.__stdout__ or sys.stdout, flush=True)
        if state is None:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="ali_ckpt_") as d:
            ck = None
            if rank == 0:
                checkpoint.save_state(Path(d), state)
                ck = ray.train.Checkpoint.from_directory(d)
                if cfg.run.log_checkpoints:   # copied now, uploaded in the background
                    tracker.artifacts(d, f"checkpoints/step_{int(state['step']):07d}")
            ray.train.report(metrics, checkpoint=ck)

    ok = False
    try:
        loop.run(cfg, device, report, tracker, restored)
        ok = True
    finally:
        # everything logged reaches MLflow before the driver closes the run (a failing run
        # waits less: its error matters more than its last metrics)
        tracker.close(timeout=600 if ok else 30)
