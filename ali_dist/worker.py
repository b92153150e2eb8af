"""What each Ray Train worker runs: the only module that talks to `ray.train`.

Ray Train starts one process per worker and the process group (gloo on CPU, NCCL on GPU);
this adapter restores the newest checkpoint (Ray's after a failure, or the driver's on
`--resume`), runs `loop.run`, and turns its reports into `ray.train.report` calls. Every rank
reports (Ray Train V2 expects it); rank 0 attaches the checkpoint.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from . import checkpoint, loop
from .config import Config
from .tracking import RunRef, Tracker


def train_func(loop_config: dict) -> None:
    import ray.train
    import ray.train.torch

    cfg = Config.from_dict(loop_config["config"])
    ref = RunRef(**loop_config["mlflow"]) if loop_config.get("mlflow") else None
    rank = ray.train.get_context().get_world_rank()
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(cfg.run.cpus_per_worker)))

    # After a failure inside this run Ray hands over its newest checkpoint; on `--resume` the
    # driver names the newest one in storage (Train V2's way to start from an earlier run).
    restored = None
    ckpt = ray.train.get_checkpoint()
    if ckpt is None and loop_config.get("resume_from"):
        ckpt = ray.train.Checkpoint(loop_config["resume_from"])
    if ckpt is not None:
        with ckpt.as_directory() as d:
            restored = checkpoint.load_state(d)

    def report(metrics: dict, state: dict | None) -> None:
        if state is None:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="ali_ckpt_") as d:
            ck = None
            if rank == 0:
                checkpoint.save_state(Path(d), state)
                ck = ray.train.Checkpoint.from_directory(d)
            ray.train.report(metrics, checkpoint=ck)

    loop.run(cfg, device, report, Tracker(ref if rank == 0 else None), restored)
