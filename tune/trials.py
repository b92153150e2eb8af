"""What one Tune trial runs. A trial's config carries three parts:

    study     the `record.StudyRef` (MLflow parent run) as a dict
    base      the training config shared by every trial (`ali_dist.config.Config.to_dict()`)
    setting   this trial's draw: lr, beta1, (init_std; a recipe search's other config
              fields,) seed, index
    model     (toy study) the method: any of `ali_dist.methods.METHODS`

`toy_trial` trains any method in the trial's own process (on 2 cores a worker group per trial starves);
`torch_trial` starts a distributed TorchTrainer (its own workers and resources) and lets
`TuneReportCallback` forward rank 0's reports to Tune.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from ali_dist import checkpoint, config as config_lib, tracking

from . import record, report as results


def trial_config(config: dict) -> config_lib.Config:
    """The resolved training config of this trial: the base with the setting applied."""
    cfg = config_lib.Config.from_dict(config["base"])
    s = config["setting"]
    for key, value in setting_fields(s).items():
        section = cfg.optim if hasattr(cfg.optim, key) else cfg.model
        if not hasattr(section, key):
            raise ValueError(f"setting {key!r} is not a model or optim field of the config")
        setattr(section, key, value)
    cfg.run.seed = s["seed"]
    if "model" in config:
        config_lib.for_method(cfg, config["model"])
    return config_lib.resolve(cfg)


def setting_fields(setting: dict) -> dict:
    """A setting's config fields: its draws (a recipe's update `scheme` unpacked into update
    and d_steps), without the bookkeeping (seed, index)."""
    out = {}
    for key, value in setting.items():
        if key == "scheme":
            out.update(value)
        elif key not in ("seed", "index"):
            out[key] = value
    return out


def _open_child(config: dict, cfg: config_lib.Config) -> tracking.RunRef:
    import ray.tune
    trial_id = ray.tune.get_context().get_trial_id()
    s = config["setting"]
    name = f"{cfg.model.method}-{s['index']:02d}" if "model" in config else f"trial-{trial_id}"
    return record.child_run(config["study"], trial_id, name, cfg.flat(),
                            {"model": cfg.model.method, "preset": cfg.model.preset,
                             "setting": str(s["index"])})


def toy_trial(config: dict) -> None:
    """Any method through `ali_dist.loop.run` in the trial's own process, with Tune
    checkpoints, so a restored study continues it."""
    import ray.tune

    from ali_dist import loop

    torch.set_num_threads(1)   # the trial holds one Tune CPU
    cfg = trial_config(config)
    ref = _open_child(config, cfg)
    restored = None
    ckpt = ray.tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            restored = checkpoint.load_state(d)

    def report(metrics: dict, state: dict | None) -> None:
        if results.MODES_STRICT in metrics:      # what the recipe search's ASHA ranks by
            metrics = {**metrics, results.RECIPE: results.recipe_score(metrics)}
        if state is None:
            ray.tune.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="ali_tune_") as d:
            checkpoint.save_state(Path(d), state)
            ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(d))

    status = "FAILED"
    try:
        loop.run(cfg, torch.device("cpu"), report, tracking.Tracker(ref), restored)
        status = "FINISHED"
    finally:
        tracking.end_run(ref, status)


def torch_trial(config: dict) -> None:
    """One distributed training run per trial (`ali_dist.train.make_trainer`, as the training
    CLI builds it, plus Tune's report callback). Its Train run lives at
    <study>/trainers/<trial id>; a restored study resumes it from its newest checkpoint there."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from ali_dist import storage as storage_lib
    from ali_dist.train import make_trainer

    cfg = trial_config(config)
    ref = _open_child(config, cfg)
    storage = config["trainer_storage"]
    cfg.run.name = ray.tune.get_context().get_trial_id()
    resume_from = storage_lib.latest_checkpoint(storage, cfg.run.name) \
        if storage_lib.run_exists(storage, cfg.run.name) else None
    trainer = make_trainer(cfg, ref, storage, cfg.run.gpus_per_worker or 0.0, resume_from,
                           callbacks=[TuneReportCallback()])
    status = "FAILED"
    try:
        trainer.fit()
        status = "FINISHED"
    finally:
        tracking.end_run(ref, status)
