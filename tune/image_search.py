"""An ASHA search of one preset through Ray Train: each trial is a distributed TorchTrainer
with its own workers; Tune draws lr (log-uniform) and beta1 (uniform) and ASHA stops trials
whose metric trails at a rung: the reconstruction ratio (reconstruction MSE / random-pair MSE)
for a method with an encoder, the test error for one that classifies (kplus1, classifier);
lower is better for both. `--resume` continues a search whose driver died (Tuner.restore):
finished trials are kept, each unfinished one restarts its TorchTrainer from its newest
checkpoint.
"""
from __future__ import annotations

import os
from pathlib import Path

from ali_dist.methods import LABELLED, MODEL_PARTS
from ali_dist.models import get_preset

from . import record, report, study
from .space import describe, get_budget, image_space, toy_space

TRIAL_DRIVER_CPU = 0.05


def search_metric(method: str) -> str:
    """What ASHA ranks `method`'s trials by (lower is better), or a ValueError saying why the
    method has nothing to rank by."""
    if method in LABELLED:
        return report.CLASSIFY
    if MODEL_PARTS[method][0]:
        return report.RECON
    raise ValueError(f"--method {method}: a model without an encoder has no reconstruction "
                     f"ratio (nor a classifier's error) for ASHA to rank trials by; the toy "
                     f"study compares GANs by mode counts (python -m tune.search --preset toy)")


def _per_trial(cfg) -> tuple[str, float]:
    """The resource a trial's workers are counted in, and how much of it one trial takes."""
    gpus = cfg.run.gpus_per_worker or 0
    return ("GPU", cfg.run.workers * gpus) if gpus else \
        ("CPU", cfg.run.workers * cfg.run.cpus_per_worker)


def _concurrency(args, cfg, trials: int) -> int:
    """Trials at a time: --concurrency, else what the resources hold. A local CPU cluster
    counts cores (it declares more logical CPUs than cores) and runs at most two trials, so
    that worker groups do not starve each other (STACK_NOTES)."""
    if args.concurrency:
        return max(1, args.concurrency)
    kind, need = _per_trial(cfg)
    if os.environ.get("RAY_ADDRESS"):
        import ray
        have = ray.cluster_resources().get(kind, 0)
    elif kind == "GPU":
        import torch
        have = torch.cuda.device_count()
    else:
        have = min(os.cpu_count() or 1, 2 * need)
    return max(1, min(trials, int(have // max(need, 1e-9))))


def run(args) -> dict:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    from ali_dist import storage as storage_lib
    from ali_dist.evaluate.suite import check_metrics
    from ali_dist.train import _gpus_per_worker, _prepare_data

    from .study import base_config
    from .trials import torch_trial

    metric = search_metric(args.method)       # before anything starts
    place = study.Place(storage_lib.resolve(args.storage), args.name, args.resume)
    place.check()
    preset = get_preset(args.preset)
    budget = get_budget("image", args.budget).with_overrides(args.trials, args.steps,
                                                             args.epochs, args.eval_every)
    cfg = base_config(args)
    cfg.model.method = args.method
    names = check_metrics(cfg.eval.metrics)
    if metric == report.CLASSIFY and "classify" not in names:   # at every evaluation
        cfg.eval.metrics = ",".join((*names, "classify"))
    cfg.run.workers, cfg.run.cpus_per_worker = args.workers, args.cpus_per_worker
    cfg.run.gpus_per_worker = args.gpus_per_worker
    cfg.optim.steps, cfg.optim.epochs = budget.steps, budget.epochs
    # Every report must carry the metric ASHA ranks by: report, evaluate and checkpoint at
    # the same steps.
    cfg.run.log_every = cfg.run.eval_every = cfg.run.checkpoint_every = budget.eval_every
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    _prepare_data(cfg)                      # convert embedded data once, before any trial
    # A report without the metric (a run that stopped on divergence) must not fail the study.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "120")
    if cfg.run.gpus_per_worker is None and not os.environ.get("RAY_ADDRESS"):
        import torch
        cfg.run.gpus_per_worker = 1.0 if torch.cuda.is_available() else 0.0
    concurrency = _concurrency(args, cfg, budget.trials)
    # A local Ray must hold every concurrent trial's workers plus the trials themselves.
    study.init_ray(concurrency * (args.workers * args.cpus_per_worker + TRIAL_DRIVER_CPU))
    cfg.run.gpus_per_worker = _gpus_per_worker(cfg)
    space = image_space(args.preset) if preset.is_image else toy_space(args.preset)
    budget_text = budget.describe("image")

    ref = study.open_parent(
        place, args.experiment,
        {"preset": args.preset, "method": args.method, "budget": args.budget,
         "trials": budget.trials, "steps": budget.steps, "epochs": budget.epochs,
         "eval_every": budget.eval_every, "search_space": describe(space),
         "search_seed": args.seed, "workers_per_trial": args.workers,
         "concurrency": concurrency, "metric": f"{metric} (min)"},
        {**study.base_tags("search", args.preset), "budget": budget_text})
    print(f"[tune] search {args.name!r} of {args.preset}: {budget_text}; {describe(space)}; "
          f"{args.workers} worker(s) per trial, {concurrency} trial(s) at a time; ASHA on "
          f"{metric}; MLflow parent run {ref.parent_run_id}", flush=True)

    setting = {**space, "seed": tune.randint(0, 2 ** 31 - 1), "index": 0}
    param_space = {"study": ref.as_dict(), "base": cfg.to_dict(), "setting": setting,
                   "trainer_storage": f"{place.path}/trainers"}
    # Past the last step: a trial ends by itself (closing its Train and MLflow runs) rather
    # than being stopped by ASHA at max_t. An epoch budget: each trial ends by itself.
    max_t = budget.steps + 1 if budget.steps else 10 ** 12
    grace = min(args.grace_steps or budget.eval_every, max_t)
    asha = ASHAScheduler(time_attr="step", metric=metric, mode="min", max_t=max_t,
                         grace_period=grace, reduction_factor=args.reduction_factor)
    # The cap goes to the search algorithm: Tune ignores max_concurrent_trials for it.
    tune_config = tune.TuneConfig(
        num_samples=budget.trials, scheduler=asha,
        search_alg=BasicVariantGenerator(random_state=args.seed, max_concurrent=concurrency))
    try:
        # The trial itself only waits on its TorchTrainer, whose workers hold the resources;
        # Tune refuses an empty request, so it asks for a token share of a CPU.
        results = study.fit(place, torch_trial, {"CPU": TRIAL_DRIVER_CPU}, param_space,
                            tune_config)
    except BaseException:
        record.log_study(ref, {}, {}, {}, status="FAILED")
        raise
    return summarize(results, ref, budget_text, budget.steps, args, place, metric, cfg)


def summarize(results, ref: record.StudyRef, budget_text: str, steps: int | None, args,
              place: study.Place, metric: str, cfg) -> dict:
    rows = report.search_rows(results, metric)
    early = {r["trial_id"] for r in rows if r["ok"] and steps and (r["step"] or 0) < steps}
    best = None
    if rows and rows[0]["ok"]:
        s = rows[0]["setting"]
        method = f" --method {args.method}" if args.method != "ali" else ""
        if args.method in LABELLED and cfg.data.labels:     # else the preset's default
            method += f" --labels {cfg.data.labels}"
        best = {"trial_id": rows[0]["trial_id"], metric: rows[0][metric], "setting": s,
                "command": f"python -m ali_dist.train --preset {args.preset}{method} "
                           f"--lr {s['lr']:.4g} "
                           f"--beta1 {s['beta1']:.3f} --seed {s['seed']} --workers {args.workers}"
                           + (f" --init-std {s['init_std']:.4g}" if "init_std" in s else "")
                           + (f" --data {args.data}" if args.data else "")
                           + (f" --config {args.config}" if args.config else "")
                           + (f" --steps {steps}" if steps else "")}
    files = {"search_table.md": report.search_markdown(rows, budget_text, metric, steps),
             "trials.json": record.to_json(rows), "best_config.json": record.to_json(best)}
    out = Path(args.out) if args.out else place.default_out()
    study.write_outputs(out, files)
    record.close_children(ref, {r['trial_id'] for r in rows if r['ok']} - early, early)
    record.log_study(ref, files, {f"best_{metric}": best[metric]} if best else {}, {},
                     params={f"best.{k}": v for k, v in (best or {}).get("setting", {}).items()
                             if k != "index"})
    print(files["search_table.md"], flush=True)
    if best:
        print(f"[tune] best: {metric} {best[metric]:.4f}; {best['command']}")
    print(f"[tune] files in {out.resolve()}; MLflow parent run {ref.parent_run_id}", flush=True)
    return {"rows": rows, "best": best, "out": str(out), "stopped_early": sorted(early),
            "parent_run_id": ref.parent_run_id, "tracking_uri": ref.tracking_uri}
