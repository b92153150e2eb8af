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

REPO_ROOT = Path(__file__).resolve().parent.parent


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ali_dist.train",
        description="Train ALI (or another method: --method) with Ray Train: one data-parallel process "
                    "per worker, checkpoints in Ray storage, everything in MLflow. With no "
                    "arguments: the embedded demo on this machine.",
        epilog="Precedence: defaults < --config YAML < flags. Ray: joins the cluster at "
               "RAY_ADDRESS when set (as under `ray job submit`), else starts a local one. "
               "MLflow: MLFLOW_TRACKING_URI when set, else a SQLite store under "
               "~/.cache/ali_dist (ALI_DIST_HOME). Open it with `mlflow ui --backend-store-uri "
               "sqlite:///$HOME/.cache/ali_dist/mlflow.db`.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with sections model/data/optim/run; flags given "
                                    "on the command line override it")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as JSON and exit")
    config_lib.add_arguments(p)
    return p


def _init_ray(cfg) -> None:
    """Join the cluster at RAY_ADDRESS (under `ray job submit` the job's runtime env, working
    directory included, already applies to every worker), else start a private local one.
    Workers need no environment from here: the MLflow run reaches them in their config."""
    import ray
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True)
        return
    need = cfg.run.workers * cfg.run.cpus_per_worker
    ray.init(num_cpus=max(os.cpu_count() or 1, int(need + 0.999)),
             include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=True,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(
                 filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}})


def _gpus_per_worker(cfg) -> float:
    if cfg.run.gpus_per_worker is not None:
        return cfg.run.gpus_per_worker
    import ray
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def _prepare_data(cfg) -> None:
    """Convert an embedded dataset once, here, so that workers never race to do it."""
    if cfg.data.image_size and cfg.data.data == "digits":
        from data_tools.digits import ensure_digits
        cache = Path(cfg.data.cache_dir or tracking.DEFAULT_HOME / "data").expanduser()
        cfg.data.data = str(ensure_digits(cache))


def make_trainer(cfg, ref, storage: str, gpus: float, resume_from: str | None,
                 callbacks: list | None = None):
    """The TorchTrainer for one run: `cfg.run.workers` processes (gloo on CPU, NCCL with
    GPUs), checkpoints under <storage>/<cfg.run.name>. Tune trials build theirs here too."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from . import worker
    return TorchTrainer(
        worker.train_func,
        train_loop_config={"config": cfg.to_dict(), "mlflow": dataclasses.asdict(ref),
                           "resume_from": resume_from},
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
    previous, resume_from = None, None
    if storage_lib.run_exists(storage, cfg.run.name):
        if not cfg.run.resume:
            raise SystemExit(f"error: a run named {cfg.run.name!r} exists in {storage}; pass "
                             f"--resume to continue it or choose another --name")
        previous = storage_lib.read_meta(storage, cfg.run.name)
        resume_from = storage_lib.latest_checkpoint(storage, cfg.run.name)
        print(f"[ali_dist] resuming {cfg.run.name!r} from "
              f"{resume_from or 'the start (no checkpoint was saved)'}", flush=True)
    elif cfg.run.resume:
        raise SystemExit(f"error: --resume: no run named {cfg.run.name!r} in {storage}")

    _prepare_data(cfg)
    _init_ray(cfg)
    gpus = _gpus_per_worker(cfg)
    tags = {"preset": cfg.model.preset, "method": cfg.model.method,
            "world_size": str(cfg.run.workers), "git_commit": tracking.git_commit(),
            "ray_storage": f"{storage}/{cfg.run.name}", "device": "gpu" if gpus else "cpu"}
    ref = tracking.start_run(cfg.run.experiment, cfg.run.name, cfg.flat(), tags,
                             run_id=previous and previous.get("mlflow_run_id"))
    storage_lib.write_meta(storage, cfg.run.name, {"mlflow_run_id": ref.run_id,
                                                   "tracking_uri": ref.tracking_uri})
    print(f"[ali_dist] run {cfg.run.name}: {cfg.run.workers} worker(s) x batch "
          f"{cfg.optim.batch_size} = global batch {cfg.run.workers * cfg.optim.batch_size}, "
          f"{'GPU' if gpus else 'CPU'}; MLflow run {ref.run_id} at {ref.tracking_uri}",
          flush=True)

    trainer = make_trainer(cfg, ref, storage, gpus, resume_from)
    t0 = time.time()
    try:
        result = trainer.fit()
    except BaseException:
        tracking.end_run(ref, "FAILED")
        raise
    elapsed = time.time() - t0
    if result.metrics and result.metrics.get("diverged"):
        tracking.end_run(ref, "FAILED")
        raise SystemExit(f"error: {result.metrics['divergence']}. The last good checkpoint is "
                         f"{result.checkpoint.path if result.checkpoint else 'none'}; continue "
                         f"with --resume --name {cfg.run.name} and a lower --lr")

    output = Path(cfg.run.output or _default_output(storage, cfg.run.name)).resolve()
    with result.checkpoint.as_directory() as d:
        saved_cfg, model_state = checkpoint.read_model_dir(d)
    checkpoint.export_model(output, model_state, saved_cfg)
    tracker = tracking.Tracker(ref)
    tracker.artifacts(output, "model")
    tracker.metrics({"train_seconds": elapsed}, int(result.metrics.get("step", 0)))
    tracking.end_run(ref)
    summary = {"metrics": dict(result.metrics), "mlflow_run_id": ref.run_id,
               "tracking_uri": ref.tracking_uri, "model_dir": str(output),
               "checkpoint": result.checkpoint.path, "seconds": elapsed}
    _print_summary(cfg, summary)
    return summary


def _default_output(storage: str, name: str) -> Path:
    """Beside the checkpoints for local storage; ./ali_models/<name> for remote storage."""
    return Path(storage) / name / "model" if "://" not in storage else Path("ali_models") / name


def _print_summary(cfg, s: dict) -> None:
    m = s["metrics"]
    lines = [f"[ali_dist] done: {m.get('step')} steps in {s['seconds']:.0f}s"]
    if "modes_paper" in m:
        lines.append(f"[ali_dist] modes covered: {m['modes_paper']}/25 (paper: 10,000 samples, "
                     f"largest responsibility), {m['modes_strict']}/25 (strict: 2,500 samples "
                     f"within 3 sigma); high quality {100 * m['high_quality']:.1f}%, reverse KL "
                     f"{m['reverse_kl']:.3f}")
    if "recon_ratio" in m:
        lines.append(f"[ali_dist] reconstruction MSE {m['recon_mse']:.4f} vs random pair "
                     f"{m['recon_mse_random_pair']:.4f} (ratio {m['recon_ratio']:.2f})")
    lines.append(f"[ali_dist] model: {s['model_dir']}  (ali_dist.load(...) or "
                 f"runs:/{s['mlflow_run_id']}/model)")
    lines.append(f"[ali_dist] MLflow: {s['tracking_uri']}, experiment {cfg.run.experiment!r}")
    print("\n".join(lines), flush=True)


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
