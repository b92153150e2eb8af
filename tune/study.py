"""What every study shares: the local Ray, the study's place in storage, its MLflow parent run
(kept across `--resume`), and fitting or restoring the Tuner."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ali_dist import config as config_lib, storage as storage_lib, tracking
from ali_dist.methods import LABELLED

from . import record

# what the toy study can train: every method that needs no labels (the toy has none)
MODELS = tuple(m for m in config_lib.METHOD_NAMES if m not in LABELLED)

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Place:
    """Where a study lives: Tune's experiment directory <storage>/<name>."""
    storage: str
    name: str
    resume: bool

    @property
    def path(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"

    def exists(self) -> bool:
        return storage_lib.run_exists(self.storage, self.name)

    def check(self) -> None:
        exists = self.exists()
        if exists and not self.resume:
            raise SystemExit(f"error: a study named {self.name!r} exists in {self.storage}; pass "
                             f"--resume to continue it or choose another --name")
        if self.resume and not exists:
            raise SystemExit(f"error: --resume: no study named {self.name!r} in {self.storage}")

    def default_out(self) -> Path:
        """Where the table files go: inside the study for local storage."""
        if "://" in self.storage:
            return Path("tune_results") / self.name
        return Path(self.path)


def init_ray(cpus_needed: float) -> None:
    """Join RAY_ADDRESS when set, else start a private local Ray. Trials inherit the MLflow
    and ali-dist settings and import this repository's code. More logical CPUs than cores are
    declared where trials would otherwise wait on each other (STACK_NOTES: starvation on 2
    cores); the cap on concurrent trials keeps the real load in check."""
    import ray
    if ray.is_initialized():
        return
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    for var in ("MLFLOW_TRACKING_URI", "ALI_DIST_HOME", "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"):
        if os.environ.get(var):
            env[var] = os.environ[var]
    if os.environ.get("RAY_ADDRESS"):
        ray.init(runtime_env={"env_vars": env}, log_to_driver=True)
    else:
        ray.init(num_cpus=max(os.cpu_count() or 1, int(cpus_needed + 0.999)),
                 include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=True)


def open_parent(place: Place, experiment: str, params: dict, tags: dict) -> record.StudyRef:
    """The study's MLflow run: reopened on --resume (its id is kept in the study directory)."""
    meta = storage_lib.read_meta(place.storage, place.name) if place.resume else None
    study = record.start_parent(place.name, experiment, params, tags,
                                run_id=(meta or {}).get("mlflow_run_id"))
    storage_lib.write_meta(place.storage, place.name, {"mlflow_run_id": study.parent_run_id,
                                                       "tracking_uri": study.tracking_uri,
                                                       "kind": tags.get("kind")})
    return study


def fit(place: Place, trainable, resources: dict, param_space: dict, tune_config):
    """Run the study to the end (or continue it with --resume); returns Tune's ResultGrid."""
    from ray import tune

    # Trials checkpoint at every evaluation and Tune keeps one: each checkpoint forces an
    # experiment snapshot, which is cheap here; silence Tune's warning about their frequency.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    wrapped = tune.with_resources(trainable, resources)
    if place.resume and tune.Tuner.can_restore(place.path):
        tuner = tune.Tuner.restore(place.path, trainable=wrapped, resume_unfinished=True,
                                   resume_errored=True)
    else:  # a fresh study, or one whose driver died before Tune saved any state
        tuner = tune.Tuner(
            wrapped, param_space=param_space, tune_config=tune_config,
            run_config=tune.RunConfig(
                name=place.name, storage_path=place.storage,
                failure_config=tune.FailureConfig(max_failures=1),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
    return tuner.fit()


def write_outputs(out: Path, files: dict[str, str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text)


def base_tags(kind: str, preset: str) -> dict:
    return {"kind": kind, "preset": preset, "git_commit": tracking.git_commit()}


def base_config(args) -> config_lib.Config:
    """The training config every trial starts from: defaults < --config YAML < flags."""
    d = config_lib.Config().to_dict()
    if args.config:
        for section, values in config_lib.load_yaml(args.config).items():
            if section not in d or not isinstance(values, dict):
                raise ValueError(f"{args.config}: unknown section {section!r}; "
                                 f"expected {sorted(d)}")
            d[section].update(values)
    cfg = config_lib.Config.from_dict(d)
    cfg.model.preset = args.preset
    if args.data:
        cfg.data.data = args.data
    for name in ("batch_size", "update", "lr_decay", "lr_hold", "lr_final", "cycle"):
        if getattr(args, name) is not None:
            setattr(cfg.optim, name, getattr(args, name))
    cfg.run.experiment = args.experiment
    return cfg


def parse_models(text: str) -> list[str]:
    models = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(f"--models: unknown {', '.join(unknown) or '(none given)'}; choose "
                         f"from {', '.join(MODELS)}")
    return models
