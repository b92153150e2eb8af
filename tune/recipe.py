"""The toy recipe search: what the paper leaves open (learning-rate schedule, beta1, batch,
update scheme and D steps, init std, batch norm's momentum), searched for ALI with ASHA on the
strict mode count times the high-quality share (`report.RECIPE`), then the best recipe
trained again at `--seeds` fresh seeds: the mean of those runs, not the lucky search trial, is
what the recipe is judged by (PacGAN's ALI: 24.1 strict modes, 95.7 % high quality, reverse
KL 0.14; `report.TARGETS`).

    python -m tune.search --recipe [--budget ci|laptop|long] [--trials N] [--steps N] ...
"""
from __future__ import annotations

import os
from pathlib import Path

from . import record, report, study
from .space import short, describe, get_budget, recipe_space
from .toy_study import study_storage


def run(args) -> dict:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    from .study import base_config
    from .trials import toy_trial

    storage = study_storage(args)
    search_place = study.Place(storage, args.name, args.resume)
    search_place.check()
    budget = get_budget("recipe", args.budget).with_overrides(args.trials, args.steps, None,
                                                              args.eval_every)
    base = base_config(args)
    base.model.method = "ali"
    base.run.workers, base.run.cpus_per_worker = 1, 1   # a trial is one thread
    base.optim.steps, base.optim.epochs = budget.steps, None
    # Every report must carry the score ASHA ranks by: report, evaluate and checkpoint at
    # the same steps.
    base.run.log_every = base.run.eval_every = base.run.checkpoint_every = budget.eval_every
    space = recipe_space()
    concurrency = max(1, args.concurrency or min(budget.trials, os.cpu_count() or 1))
    budget_text = budget.describe("recipe")
    study.init_ray(concurrency)
    ref = study.open_parent(
        search_place, args.experiment,
        {"preset": args.preset, "model": "ali", "budget": args.budget, "trials": budget.trials,
         "steps": budget.steps, "eval_every": budget.eval_every, "seeds": args.seeds,
         "search_space": describe(space), "search_seed": args.seed,
         "concurrency": concurrency, "metric": f"{report.RECIPE} (max)"},
        {**study.base_tags("recipe_search", args.preset), "budget": budget_text})
    print(f"[tune] recipe search {args.name!r}: ALI, {budget_text}; {describe(space)}; "
          f"ASHA on {report.RECIPE} (strict modes / 25 x high-quality share), {concurrency} "
          f"trial(s) at a time; then the best recipe at {args.seeds} seed(s); MLflow parent "
          f"run {ref.parent_run_id}", flush=True)

    max_t = budget.steps + 1          # past the last step: a full trial ends by itself
    # Samples sharpen only as the rate falls: every trial is near 1 % high quality at the
    # first evaluations, so ASHA's first rung waits for the third.
    grace = min(args.grace_steps or 3 * budget.eval_every, max_t)
    asha = ASHAScheduler(time_attr="step", metric=report.RECIPE, mode="max", max_t=max_t,
                         grace_period=grace, reduction_factor=args.reduction_factor)
    setting = {**space, "seed": tune.randint(0, 2 ** 31 - 1), "index": 0}
    try:
        found = study.fit(search_place, toy_trial, {"CPU": 1},
                          {"study": ref.as_dict(), "base": base.to_dict(), "setting": setting},
                          tune.TuneConfig(num_samples=budget.trials, scheduler=asha,
                                          search_alg=BasicVariantGenerator(
                                              random_state=args.seed,
                                              max_concurrent=concurrency)))
        rows = ranked(report.trial_rows(found), budget.steps)
        if not rows or not rows[0]["ok"]:
            raise RuntimeError("no trial of the recipe search finished with mode counts; "
                               "see the trials' errors in " + search_place.path)
        seed_rows = []
        if args.seeds:
            # Fresh seeds (not the search's sequence), one full run each; --resume continues
            # this grid where it exists, or starts it after a search run with --seeds 0.
            again = study.fit(_seeds_place(storage, args), toy_trial, {"CPU": 1},
                              {"study": ref.as_dict(), "base": base.to_dict(),
                               "setting": tune.grid_search(
                                   [{**rows[0]["setting"], "seed": 1000 + i, "index": i}
                                    for i in range(args.seeds)])},
                              tune.TuneConfig(num_samples=1, max_concurrent_trials=concurrency))
            seed_rows = sorted(ranked(report.trial_rows(again), budget.steps),
                               key=lambda r: r["setting"]["index"])
    except BaseException:
        record.log_study(ref, {}, {}, {}, status="FAILED")
        raise
    return summarize(rows, seed_rows, ref, budget, budget_text, args,
                     Path(args.out) if args.out else search_place.default_out())


def _seeds_place(storage: str, args) -> study.Place:
    """The seeds' own Tune experiment beside the search's: continued on --resume where it
    exists, else started."""
    place = study.Place(storage, f"{args.name}-seeds", resume=False)
    place.resume = args.resume and place.exists()
    place.check()
    return place


def ranked(rows: list[dict], steps: int) -> list[dict]:
    """Trials best first: finished ones by their final score, then the ones ASHA stopped
    (by the score they were stopped at), then failures."""
    for r in rows:
        r[report.RECIPE] = report.recipe_score(r) if r["ok"] else None
        r["stopped_early"] = r["ok"] and (r["step"] or 0) < steps
    return sorted(rows, key=lambda r: (not r["ok"], r["stopped_early"],
                                       -(r[report.RECIPE] or 0.0)))


def command(setting: dict, preset: str, steps: int) -> str:
    """The training command of a recipe."""
    from .trials import setting_fields
    flags = " ".join(f"--{k.replace('_', '-')} {v:.4g}" if isinstance(v, float) else
                     f"--{k.replace('_', '-')} {v}" for k, v in setting_fields(setting).items())
    return f"python -m ali_dist.train --preset {preset} {flags} --steps {steps}"


def recipe_yaml(setting: dict, preset: str, steps: int) -> str:
    """The recipe as a training config (`--config` of `python -m ali_dist.train` and of
    `python -m tune.search`, whose toy study then draws lr, beta1 and init std around it)."""
    import yaml

    from ali_dist import config as config_lib

    from .trials import setting_fields
    optim = config_lib.Config().optim
    out = {"model": {"preset": preset}, "optim": {"steps": steps}}
    for k, v in setting_fields(setting).items():
        out["optim" if hasattr(optim, k) else "model"][k] = v
    return yaml.safe_dump(out, sort_keys=False)


def seed_summary(rows: list[dict]) -> dict:
    """Mean, std, min and max of each target metric over the seeds that finished, and whether
    the means meet `report.TARGETS`."""
    ok = [r for r in rows if r["ok"]]
    out = {"seeds": len(rows), "finished": len(ok)}
    for k in report.TARGETS:
        s = report.stats([r[k] for r in ok if r.get(k) is not None])
        if s:
            out[k] = s
    out["meets_targets"] = report.meets_targets({k: v["mean"] for k, v in out.items()
                                                 if isinstance(v, dict)})
    return out


def markdown(rows: list[dict], seeds: list[dict], summary: dict, budget_text: str) -> str:
    keys = ("lr", "beta1", "batch_size", "scheme", "lr_decay", "lr_hold", "lr_final",
            "init_std", "bn_momentum")
    head = ("trial", *keys, "steps", "strict modes", "% HQ", "reverse KL", "recon ratio",
            report.RECIPE, "status")

    def cells(r: dict) -> list[str]:
        s = r["setting"]
        status = r["error"] or "no metric" if not r["ok"] else \
            "stopped by ASHA" if r.get("stopped_early") else "finished"
        num = lambda k, f: "–" if r.get(k) is None else format(r[k], f)   # noqa: E731
        return [str(r["trial_id"]), *(short(s[k]) if not isinstance(s.get(k), float) else
                                      f"{s[k]:.3g}" for k in keys),
                str(r["step"]), num(report.MODES_STRICT, "g"),
                "–" if r.get(report.HIGH_QUALITY) is None else f"{100 * r[report.HIGH_QUALITY]:.1f}",
                num(report.REVERSE_KL, ".3f"), num(report.RECON, ".3f"),
                num(report.RECIPE, ".3f"), status]

    def table(rs: list[dict]) -> list[str]:
        return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                *("| " + " | ".join(cells(r)) + " |" for r in rs)]

    def stat(k: str, pct: bool = False) -> str:
        s = summary.get(k)
        if not s:
            return "–"
        f = (lambda v: f"{100 * v:.1f}") if pct else (lambda v: f"{v:.3g}")  # noqa: E731
        return f"{f(s['mean'])} ± {f(s['std'])} ({f(s['min'])}–{f(s['max'])})"

    targets = ", ".join(f"{k} {op} {v:g}" for k, (op, v) in report.TARGETS.items())
    head_lines = [f"Recipe search. Budget: {budget_text}. ASHA on {report.RECIPE} = strict "
                  f"modes / 25 x high-quality share; sorted best first.", "", *table(rows), ""]
    if not seeds:
        return "\n".join(head_lines + [
            "The best recipe is not trained at fresh seeds yet (--seeds 0): run the same "
            "command with --resume --seeds 3.", ""])
    return "\n".join(head_lines + [
        f"The best recipe at {summary['seeds']} fresh seeds ({summary['finished']} finished):",
        "", *table(seeds), "",
        f"Mean over seeds: strict modes {stat(report.MODES_STRICT)}, high quality "
        f"{stat(report.HIGH_QUALITY, pct=True)} %, reverse KL {stat(report.REVERSE_KL)}, "
        f"recon ratio {stat(report.RECON)}. Targets ({targets}): "
        f"{'met' if summary['meets_targets'] else 'not met'}.", ""])


def summarize(rows: list[dict], seed_rows: list[dict], ref: record.StudyRef, budget,
              budget_text: str, args, out: Path) -> dict:
    summary = seed_summary(seed_rows)
    best = rows[0]
    recipe = {"setting": best["setting"], "search_trial": best["trial_id"],
              "search_metrics": {k: best.get(k) for k in (*report.TARGETS, report.RECIPE)},
              "over_seeds": summary, "command": command(best["setting"], args.preset,
                                                        budget.steps)}
    files = {"recipe_table.md": markdown(rows, seed_rows, summary, budget_text),
             "trials.json": record.to_json(rows), "seeds.json": record.to_json(seed_rows),
             "best_recipe.json": record.to_json(recipe),
             "best_recipe.yaml": recipe_yaml(best["setting"], args.preset, budget.steps)}
    study.write_outputs(out, files)
    early = {r["trial_id"] for r in rows if r.get("stopped_early")}
    done = {r["trial_id"] for r in rows + seed_rows if r["ok"]} - early
    record.close_children(ref, done, early)
    metrics = {f"seeds.{k}_{stat}": float(v) for k, s in summary.items()
               if isinstance(s, dict) for stat, v in s.items() if stat != "n"}
    if seed_rows:
        metrics["seeds.meets_targets"] = float(summary["meets_targets"])
    record.log_study(ref, files, metrics, {}, params={
        f"best.{k}": short(v) for k, v in best["setting"].items() if k != "index"})
    print(files["recipe_table.md"], flush=True)
    print(f"[tune] best recipe: {recipe['command']}", flush=True)
    print(f"[tune] files in {out.resolve()}; MLflow parent run {ref.parent_run_id}", flush=True)
    return {"rows": rows, "seeds": seed_rows, "summary": summary, "recipe": recipe,
            "out": str(out), "parent_run_id": ref.parent_run_id,
            "tracking_uri": ref.tracking_uri}
