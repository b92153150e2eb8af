"""`python -m ali_dist.train`: parse the config, start or join Ray, run Ray Train's
TorchTrainer, export the trained model, and record the run in MLflow.

With no arguments it runs the embedded demo. On a cluster:
    ray job submit --working-dir . -- python -m ali_dist.train --preset celeba64 --data ...
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from . import checkpoint, config as config_lib, storage as storage_lib, tracking
from .console import Console

REPO_ROOT = Path(__file__).resolve().parent.parent


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ali_dist.train",
        description="Train ALI (or another method: --method) with Ray Train: one data-parallel process "
                    "per worker, checkpoints in Ray storage, everything in MLflow. With no "
                    "arguments: the embedded demo on this machine.",
        epilog="Precedence: defaults < --config YAML < flags. Ray: joins the cluster at "
               "RAY_ADDRESS when set (as under `ray job submit`), else starts a local one. "
               "MLflow: MLFLOW_TRACKING_URI when set (required with RAY_ADDRESS: workers on "
               "other nodes log to it), else a SQLite store under ~/.cache/ali_dist "
               "(ALI_DIST_HOME); the run's last line is the command that opens the MLflow UI on "
               "it. Console: progress, evaluations and the summary; Ray's own output goes to "
               "~/.cache/ali_dist/logs/<name>.log (--verbose: to the console).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with sections model/data/optim/run; flags given "
                                    "on the command line override it")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as JSON and exit")
    config_lib.add_arguments(p)
    return p


def _init_ray(cfg) -> bool:
    """Join the cluster at RAY_ADDRESS (under `ray job submit` the job's runtime env, working
    directory included, already applies to every worker), else start a private local one.
    Workers need no environment from here: the MLflow run reaches them in their config.
    Ray forwards workers' output here either way: the console sorts it (`console.py`).
    True when this call started Ray (and the run should stop it)."""
    import ray
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True)
        return False
    need = cfg.run.workers * cfg.run.cpus_per_worker
    ray.init(num_cpus=max(os.cpu_count() or 1, int(need + 0.999)),
             include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=True,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(
                 filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}})
    return True


def check_tracking_for_cluster() -> None:
    """On a cluster, workers on other nodes log to MLflow too: a store on this machine's disk
    is not theirs (each would write its own SQLite file, and the run would miss their data)."""
    uri = tracking.tracking_uri()
    if os.environ.get("RAY_ADDRESS") and tracking.is_local(uri):
        raise SystemExit(
            f"error: RAY_ADDRESS is set ({os.environ['RAY_ADDRESS']}), so this run joins a Ray "
            f"cluster, but MLflow would write to {uri}, a store on this machine only. Set "
            f"MLFLOW_TRACKING_URI to a tracking server every node reaches (for example "
            f"http://<host>:5000, started with `mlflow server --host <host>`), and pass it to "
            f"the job: --runtime-env-json '{{\"env_vars\": {{\"MLFLOW_TRACKING_URI\": ...}}}}'")


def resume_point(storage: str, name: str, say) -> tuple[str | None, list[str]]:
    """The newest checkpoint of a run that loads, and the names of the newer ones that do not.
    A checkpoint that is incomplete (no state file: a crash while it was written) or
    unreadable (a cut or damaged file) is named, and the one before it is used."""
    from ray.train import Checkpoint
    skipped = []
    for path in storage_lib.checkpoints(storage, name):
        try:
            with Checkpoint(path).as_directory() as d:
                checkpoint.load_state(d)
            return path, skipped
        except (FileNotFoundError, RuntimeError, OSError) as e:
            say(f"checkpoint {path} is incomplete or unreadable ({e}); trying the one before it")
            skipped.append(path.rsplit("/", 1)[-1])
    return None, skipped


def _gpus_per_worker(cfg) -> float:
    if cfg.run.gpus_per_worker is not None:
        return cfg.run.gpus_per_worker
    import ray
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def _prepare_data(cfg) -> None:
    """Convert an embedded dataset once, here, so that workers never race to do it (a config
    not yet resolved, as a search's base, means its preset's data)."""
    from .models import get_preset
    preset = get_preset(cfg.model.preset)
    if preset.is_image and (cfg.data.data or preset.default_data) == "digits":
        from data_tools.digits import ensure_digits
        cache = Path(cfg.data.cache_dir or tracking.DEFAULT_HOME / "data").expanduser()
        cfg.data.data = str(ensure_digits(cache))


def make_trainer(cfg, ref, storage: str, gpus: float, resume_from: str | None,
                 callbacks: list | None = None, console: bool = False,
                 skip_checkpoints: list[str] | None = None):
    """The TorchTrainer for one run: `cfg.run.workers` processes (gloo on CPU, NCCL with
    GPUs), checkpoints under <storage>/<cfg.run.name>; bad input stops it without a retry
    (`failures.py`). `console`: rank 0 prints its reports for the driver's console.
    `skip_checkpoints`: names of checkpoints found unreadable, which Ray may still offer (it
    restores its list of the run's checkpoints). Tune trials build theirs here too."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig

    from . import worker
    from .failures import TorchTrainer
    return TorchTrainer(
        worker.train_func,
        train_loop_config={"config": cfg.to_dict(), "mlflow": dataclasses.asdict(ref),
                           "resume_from": resume_from, "console": console,
                           "skip_checkpoints": list(skip_checkpoints or [])},
        scaling_config=ScalingConfig(
            num_workers=cfg.run.workers, use_gpu=gpus > 0,
            resources_per_worker={"CPU": cfg.run.cpus_per_worker,
                                  **({"GPU": gpus} if gpus else {})}),
        torch_config=TorchConfig(backend="nccl" if gpus else "gloo"),
        run_config=RunConfig(
            name=cfg.run.name, storage_path=storage, callbacks=callbacks or None,
            failure_config=FailureConfig(max_failures=cfg.run.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.run.keep_checkpoints)))


def train(cfg: config_lib.Config) -> dict:
    """Run a resolved config to the end; returns a summary (metrics, run id, model path)."""
    storage = storage_lib.resolve(cfg.run.storage)
    cfg.run.name = cfg.run.name or f"{cfg.model.preset}-{cfg.model.method}-" \
                                   f"{time.strftime('%Y%m%d-%H%M%S')}"
    check_tracking_for_cluster()
    console = Console(cfg.run.workers * cfg.optim.batch_size, cfg.optim.steps, cfg.optim.epochs,
                      verbose=cfg.run.verbose)
    previous, resume_from, skipped = None, None, []
    if storage_lib.run_exists(storage, cfg.run.name):
        if not cfg.run.resume:
            raise SystemExit(f"error: a run named {cfg.run.name!r} exists in {storage}; pass "
                             f"--resume to continue it or choose another --name")
        previous = storage_lib.read_meta(storage, cfg.run.name)
        resume_from, skipped = resume_point(storage, cfg.run.name, console.line)
        console.line(f"resuming {cfg.run.name!r} from "
                     f"{resume_from or 'the start (no checkpoint was saved)'}")
    elif cfg.run.resume:
        raise SystemExit(f"error: --resume: no run named {cfg.run.name!r} in {storage}")

    log_path = tracking.DEFAULT_HOME / "logs" / f"{cfg.run.name}.log"
    started_ray = False
    with console.quiet(log_path):
        try:
            _prepare_data(cfg)
            started_ray = _init_ray(cfg)
            console.attach_ray()
            return _run(cfg, console, storage, previous, (resume_from, skipped), log_path)
        finally:
            if started_ray:   # here, while its goodbyes still go to the log file
                import ray
                ray.shutdown()


def _run(cfg, console: Console, storage: str, previous: dict | None,
         resume: tuple[str | None, list[str]], log_path: Path) -> dict:
    gpus = _gpus_per_worker(cfg)
    tags = {"preset": cfg.model.preset, "method": cfg.model.method,
            "world_size": str(cfg.run.workers), "git_commit": tracking.git_commit(),
            "ray_storage": f"{storage}/{cfg.run.name}", "device": "gpu" if gpus else "cpu"}
    ref = tracking.start_run(cfg.run.experiment, cfg.run.name, cfg.flat(), tags,
                             run_id=previous and previous.get("mlflow_run_id"))
    storage_lib.write_meta(storage, cfg.run.name, {"mlflow_run_id": ref.run_id,
                                                   "tracking_uri": ref.tracking_uri})
    where = tracking.run_url(ref, ref.tracking_uri) if not tracking.is_local(ref.tracking_uri) \
        else f"run {ref.run_id} in {ref.tracking_uri}"
    console.line(f"run {cfg.run.name}: {cfg.run.workers} worker(s) x batch "
                 f"{cfg.optim.batch_size} = global batch {cfg.run.workers * cfg.optim.batch_size}"
                 f", {'GPU' if gpus else 'CPU'} | MLflow: {where} | Ray's output: "
                 f"{'this console' if cfg.run.verbose else log_path}")

    trainer = make_trainer(cfg, ref, storage, gpus, resume[0], console=True,
                           skip_checkpoints=resume[1])
    t0 = time.time()
    try:
        result = trainer.fit()
    except BaseException as e:
        console.end()
        tracking.end_run(ref, "FAILED")
        from .failures import input_error
        bad = input_error(e)
        if bad is not None:   # said once, as the last line; the traceback is in the log file
            raise SystemExit(f"error: {bad}") from None
        raise
    elapsed = time.time() - t0
    console.end()
    if result.metrics and result.metrics.get("diverged"):
        tracking.end_run(ref, "FAILED")
        raise SystemExit(f"error: {result.metrics['divergence']}. The last good checkpoint is "
                         f"{result.checkpoint.path if result.checkpoint else 'none'}; continue "
                         f"with --resume --name {cfg.run.name} and a lower --lr")

    output = Path(cfg.run.output or _default_output(storage, cfg.run.name)).resolve()
    with result.checkpoint.as_directory() as d:
        saved_cfg, model_state = checkpoint.read_model_dir(d)
    checkpoint.export_model(output, model_state, saved_cfg)
    try:
        model_uri = tracking.log_model(ref, output, cfg.run.register)
    except Exception as e:  # noqa: BLE001 - the trained model is safe on disk either way
        model_uri = None
        console.line(f"warning: the model could not be logged to MLflow ({e}); it is in "
                     f"{output}")
    tracker = tracking.Tracker(ref, warn=console.line)
    tracker.metrics({"train_seconds": elapsed}, int(result.metrics.get("step", 0)))
    tracking.end_run(ref)
    summary = {"metrics": dict(result.metrics), "mlflow_run_id": ref.run_id,
               "tracking_uri": ref.tracking_uri, "experiment_id": ref.experiment_id,
               "model_dir": str(output), "model_uri": model_uri, "log_file": str(log_path),
               "checkpoint": result.checkpoint.path, "seconds": elapsed}
    _print_summary(cfg, summary, console, ref)
    return summary


def _default_output(storage: str, name: str) -> Path:
    """Beside the checkpoints for local storage; ./ali_models/<name> for remote storage."""
    return Path(storage) / name / "model" if "://" not in storage else Path("ali_models") / name


def _print_summary(cfg, s: dict, console: Console, ref: tracking.RunRef) -> None:
    m = s["metrics"]
    console.line(f"done: {m.get('step')} steps in {s['seconds']:.0f}s")
    if "modes_paper" in m:
        console.line(f"modes covered: {m['modes_paper']}/25 (paper: 10,000 samples, largest "
                     f"responsibility), {m['modes_strict']}/25 (strict: 2,500 samples within 3 "
                     f"sigma); high quality {100 * m['high_quality']:.1f}%, reverse KL "
                     f"{m['reverse_kl']:.3f}")
    if "recon_mse_z1" in m:
        console.line(f"reconstruction MSE from z1 {m['recon_mse_z1']:.4f}, from z2 "
                     f"{m['recon_mse_z2']:.4f}, vs random pair {m['recon_mse_random_pair']:.4f}")
    elif "recon_ratio" in m:
        console.line(f"reconstruction MSE {m['recon_mse']:.4f} vs random pair "
                     f"{m['recon_mse_random_pair']:.4f} (ratio {m['recon_ratio']:.2f})")
    if "class_acc_recon" in m:
        console.line(f"reconstructions keep their input's class: "
                     f"{100 * m['class_acc_recon']:.1f}% (a pixel classifier; real images "
                     f"{100 * m['class_acc_real']:.1f}%)")
    if "class_sure_samples" in m:
        console.line(f"samples the same classifier reads as one clear class (p > 0.9): "
                     f"{100 * m['class_sure_samples']:.1f}% (real images "
                     f"{100 * m['class_sure_real']:.1f}%)")
    registered = f", registered as {cfg.run.register!r}" if cfg.run.register else ""
    console.line(f"model: {s['model_dir']}  (ali_dist.load(...), or runs:/{s['mlflow_run_id']}"
                 f"/model with ali_dist.load or mlflow.pyfunc.load_model{registered})")
    console.line(f"MLflow UI: {tracking.ui_command(ref)}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_lib.resolve(config_lib.from_args(args))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
