"""The paper's toy study (section 4.5): ALI and GAN — identical decoder and discriminator — and
the Figure 8 baselines, each trained at the same random settings of learning rate
(log-uniform), beta1 (uniform) and init std (log-uniform), in-process Tune trials on CPU.
Reports both mode counts, the share of high-quality samples and the reverse KL per model, the
best configuration, and Figure 8, to the console, to files and to MLflow.

    python -m tune.search [--budget ci|laptop|long|paper] [--trials N] [--steps N] ...
(`tune/search.py` is the command line; this module is what it runs for the toy preset).
"""
from __future__ import annotations

import os
from pathlib import Path

from ali_dist import config as config_lib
from ali_dist.models import get_preset

from . import record, report, study
from .space import describe, draw_settings, get_budget, toy_space


def _concurrency(args, n_trials: int) -> int:
    if args.concurrency:
        return max(1, args.concurrency)
    if os.environ.get("RAY_ADDRESS"):
        import ray
        return max(1, min(n_trials, int(ray.cluster_resources().get("CPU", 1))))
    return max(1, min(n_trials, os.cpu_count() or 1))


def run(args) -> dict:
    from ray import tune

    from .study import base_config, parse_models
    from .trials import toy_trial

    place = study.Place(study_storage(args), args.name, args.resume)
    place.check()
    models = parse_models(args.models)
    budget = get_budget("toy", args.budget).with_overrides(args.trials, args.steps,
                                                           args.epochs, args.eval_every)
    base = base_config(args)
    base.model.method = models[0]                   # each trial sets its own
    base.optim.batch_size = base.optim.batch_size or get_preset(args.preset).batch_size
    base.run.workers, base.run.cpus_per_worker = 1, 1   # a trial is one thread
    base.optim.steps, base.optim.epochs = budget.steps, budget.epochs
    base.run.eval_every = base.run.checkpoint_every = budget.eval_every
    base.run.log_every = min(base.run.log_every, budget.eval_every)
    space = toy_space(args.preset)
    settings = draw_settings(space, budget.trials, args.seed)
    concurrency = _concurrency(args, budget.trials * len(models))
    budget_text = budget.describe("toy")
    if "ali" in models:           # what ALI's game adds to the paper's, said in the table
        ali = config_lib.resolve(config_lib.for_method(
            config_lib.Config.from_dict(base.to_dict()), "ali")).optim   # as ALI's trials
        cycle, until = ali.cycle, ali.cycle_until
        span = "" if until >= 1 else f" for the first {100 * until:g} % of each run"
        budget_text += (f"; ALI with the cycle term at {cycle:g}{span} (--cycle 0: the "
                        f"paper's game)" if cycle else "; ALI: the paper's game (no cycle term)")
    study.init_ray(concurrency)
    concurrency = _concurrency(args, budget.trials * len(models))   # a joined cluster's CPUs

    ref = study.open_parent(
        place, args.experiment,
        {"preset": args.preset, "models": ",".join(models), "budget": args.budget,
         "trials_per_model": budget.trials, "steps": budget.steps, "epochs": budget.epochs,
         "eval_every": budget.eval_every, "search_space": describe(space),
         "search_seed": args.seed, "concurrency": concurrency,
         "batch_size": base.optim.batch_size},
        {**study.base_tags("toy_study", args.preset), "budget": budget_text})
    print(f"[tune] toy study {args.name!r}: {len(models)} models x {budget_text}; "
          f"{describe(space)}; {concurrency} trial(s) at a time; MLflow parent run "
          f"{ref.parent_run_id} at {ref.tracking_uri}", flush=True)

    param_space = {"study": ref.as_dict(), "base": base.to_dict(),
                   "model": tune.grid_search(models), "setting": tune.grid_search(settings)}
    try:
        results = study.fit(place, toy_trial, {"CPU": 1}, param_space,
                            tune.TuneConfig(num_samples=1, max_concurrent_trials=concurrency))
    except BaseException:
        record.log_study(ref, {}, {}, {}, status="FAILED")
        raise
    return summarize(results, ref, models, budget_text, args, place)


def study_storage(args) -> str:
    from ali_dist import storage as storage_lib
    return storage_lib.resolve(args.storage)


def summarize(results, ref: record.StudyRef, models: list[str], budget_text: str, args,
              place: study.Place) -> dict:
    """Table, best configuration and Figure 8, printed, written to --out and logged."""
    rows = report.trial_rows(results)
    seen = {r["model"] for r in rows}
    models = [m for m in models if m in seen] or sorted(seen)   # a resumed study: its own
    summary = report.summarize(rows, models)
    pairs = report.paired(rows)
    base = next((r.config["base"] for r in results if r.config), None)
    best = report.best_configuration(summary, base, args.preset) if base else None

    run_of = {r.data.tags.get(record.TRIAL_TAG): r.info.run_id for r in record.children(ref)}
    panels = {}
    for model in models:
        b = summary[model].get("best")
        run_id = b and run_of.get(b["trial_id"])
        local = run_id and record.download_artifact(ref.tracking_uri, run_id, report.PANELS)
        if local:
            panels[model] = local
    fig = report.figure8(panels)

    files = {"study_table.md": report.markdown(summary, budget_text),
             "study_table.json": record.to_json({"budget": budget_text, "models": summary,
                                                 "ali_vs_gan": pairs,
                                                 "reference": report.REFERENCE}),
             "trials.json": record.to_json(rows),
             "best_config.json": record.to_json(best)}
    out = Path(args.out) if args.out else place.default_out()
    study.write_outputs(out, files)
    if fig is not None:
        fig.savefig(out / "figure8.png", dpi=100)
    record.close_children(ref, {r['trial_id'] for r in rows if r['ok']}, set())
    best_params = {f"best.{k}": v for k, v in (best or {}).get("setting", {}).items()}
    record.log_study(ref, files, report.flat_metrics(summary),
                     {"figure8.png": fig} if fig is not None else {},
                     images={f"figure8/{m}.png": p for m, p in panels.items()},
                     params=best_params)
    if fig is not None:
        import matplotlib.pyplot as plt
        plt.close(fig)
    print(report.console(summary, budget_text, pairs), flush=True)
    if best:
        print(f"[tune] best ALI configuration: {best['command']}")
    print(f"[tune] table, trials and Figure 8 in {out.resolve()}; MLflow parent run "
          f"{ref.parent_run_id} (experiment {ref.experiment!r})", flush=True)
    return {"summary": summary, "rows": rows, "best": best, "pairs": pairs, "out": str(out),
            "parent_run_id": ref.parent_run_id, "tracking_uri": ref.tracking_uri}

