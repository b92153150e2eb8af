"""The study's results as a table: per model, the mean ± std, min and max of the modes covered
by both definitions, the share of high-quality samples, the reverse KL and (for models with an
encoder) the reconstruction ratio; the paper's numbers beside them; the best configuration.

Metric names are the ones `ali_dist.evaluate` reports (`mode_metrics`, `reconstruction_error`).
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from ali_dist import config as config_lib

MODES_PAPER, MODES_STRICT = "modes_paper", "modes_strict"
HIGH_QUALITY, REVERSE_KL, RECON = "high_quality", "reverse_kl", "recon_ratio"
CLASSIFY = "classify_error"          # a classifying model's test error (evaluate/classify.py)
TOY_METRICS = (MODES_PAPER, MODES_STRICT, HIGH_QUALITY, REVERSE_KL)
# The recipe search ranks by the share of the 25 modes covered by the strict count times the
# share of high-quality samples: 1 only when both are perfect, and neither can be traded
# away for the other (a collapsed decoder has ~100 % high quality on one mode).
RECIPE = "recipe_score"


def recipe_score(metrics: dict) -> float:
    return float(metrics[MODES_STRICT]) / 25 * float(metrics[HIGH_QUALITY])


# What a recipe must reach, as a mean over seeds: PacGAN's ALI (strict modes, high quality,
# reverse KL), and held-out reconstructions that land on the input's own mode.
TARGETS = {MODES_STRICT: (">=", 24), HIGH_QUALITY: (">=", 0.95), REVERSE_KL: ("<=", 0.15),
           RECON: ("<=", 0.1)}


def meets_targets(means: dict) -> bool:
    return all(k in means and (means[k] >= v if op == ">=" else means[k] <= v)
               for k, (op, v) in TARGETS.items())

# Published numbers for the same setup (MISSION.md): the ALI paper's count over 10 random
# settings, and PacGAN's strict count for ALI after 400 epochs.
REFERENCE = {
    "ali": {"source": "ALI paper, 10 random settings",
            MODES_PAPER: {"mean": 13.4, "std": 5.8, "min": 8, "max": 25}},
    "gan": {"source": "ALI paper, 10 random settings",
            MODES_PAPER: {"mean": 10.4, "std": 9.2, "min": 1, "max": 22}},
    "ali (PacGAN)": {"source": "PacGAN, lr 1e-4, beta1 0.8, 400 epochs",
                     MODES_STRICT: {"mean": 24.1, "std": 0.4}, HIGH_QUALITY: {"mean": 0.957},
                     REVERSE_KL: {"mean": 0.14}},
}


def trial_rows(result_grid) -> list[dict]:
    """One row per trial: its model, setting, status and final metrics."""
    rows = []
    for r in result_grid:
        cfg, m = r.config or {}, dict(r.metrics or {})
        ok = r.error is None and not m.get("diverged") and MODES_PAPER in m
        rows.append({
            "trial_id": m.get("trial_id") or (r.path.rsplit("/", 1)[-1] if r.path else "?"),
            "model": cfg.get("model", cfg.get("base", {}).get("model", {}).get("method")),
            "setting": cfg.get("setting", {}),
            "ok": ok, "error": None if r.error is None else str(r.error).splitlines()[0][:300],
            "step": m.get("step"), "rollbacks": m.get("rollbacks", 0),
            **{k: m[k] for k in (*TOY_METRICS, RECON, "recon_mse") if k in m}})
    return rows


def stats(values: list[float]) -> dict:
    if not values:
        return {}
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def score(row: dict) -> tuple:
    """Best = most modes by the strict count, then most high-quality samples, then the
    paper's count, then the lowest reverse KL."""
    return (row.get(MODES_STRICT, -1), row.get(HIGH_QUALITY, -1), row.get(MODES_PAPER, -1),
            -row.get(REVERSE_KL, math.inf))


def summarize(rows: list[dict], models: list[str]) -> dict:
    """Per model: statistics of each metric over its finished trials, failures, best trial."""
    out = {}
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        ok = [r for r in mine if r["ok"]]
        entry = {"trials": len(mine), "failed": len(mine) - len(ok)}
        for k in (*TOY_METRICS, RECON):           # a GAN has no reconstruction ratio
            s = stats([r[k] for r in ok if k in r])
            if s:
                entry[k] = s
        if ok:
            best = max(ok, key=score)
            entry["best"] = {"trial_id": best["trial_id"], "setting": best["setting"],
                             **{k: best[k] for k in (*TOY_METRICS, RECON) if k in best}}
        out[model] = entry
    return out


def paired(rows: list[dict], a: str = "ali", b: str = "gan") -> dict | None:
    """a vs b at identical settings: how often a covers more / as many / fewer modes."""
    by = {(r["model"], r["setting"].get("index")): r for r in rows if r["ok"]}
    pairs = [(by[(a, i)], by[(b, i)]) for (m, i) in by if m == a and (b, i) in by]
    if not pairs:
        return None
    out = {"settings": len(pairs)}
    for k in (MODES_PAPER, MODES_STRICT, HIGH_QUALITY):
        d = [x[k] - y[k] for x, y in pairs]
        out[k] = {"ahead": sum(v > 0 for v in d), "tied": sum(v == 0 for v in d),
                  "behind": sum(v < 0 for v in d), "mean_difference": statistics.fmean(d)}
    return out


def _fmt(s: dict, pct: bool = False, digits: int = 1, spread: bool = True) -> str:
    if not s:
        return "–"
    f = (lambda v: f"{100 * v:.{digits}f}") if pct else (lambda v: f"{v:.{digits}f}")
    text = f"{f(s['mean'])} ± {f(s['std'])}" if "std" in s else f(s["mean"])
    if spread and "min" in s:
        g = f if (pct or digits > 1) else (lambda v: f"{v:g}")
        text += f" ({g(s['min'])}–{g(s['max'])})"
    return text


HEADER = ("model", "trials", "modes, paper's count", "modes, strict count", "% high quality",
          "reverse KL", "recon ratio")


def _cells(name: str, e: dict) -> list[str]:
    trials = f"{e['trials'] - e['failed']}/{e['trials']}" if "trials" in e else "ref."
    return [name, trials, _fmt(e.get(MODES_PAPER, {})), _fmt(e.get(MODES_STRICT, {})),
            _fmt(e.get(HIGH_QUALITY, {}), pct=True), _fmt(e.get(REVERSE_KL, {}), digits=2),
            _fmt(e.get(RECON, {}), digits=3, spread=False)]


def markdown(summary: dict, budget: str, with_reference: bool = True) -> str:
    lines = [f"Budget: {budget}. Mean ± std (min–max) over finished trials; modes of 25.", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for model, e in summary.items():
        lines.append("| " + " | ".join(_cells(model, e)) + " |")
    if with_reference:
        for name, e in REFERENCE.items():
            lines.append("| " + " | ".join(_cells(f"{name} [{e['source']}]", e)) + " |")
    return "\n".join(lines) + "\n"


def console(summary: dict, budget: str, pairs: dict | None) -> str:
    rows = [list(HEADER)] + [_cells(m, e) for m, e in summary.items()] + \
           [_cells(f"{n} (published)", e) for n, e in REFERENCE.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    text = [f"Toy study — {budget}"]
    for i, r in enumerate(rows):
        text.append("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        if i == 0:
            text.append("  ".join("-" * w for w in widths))
    if pairs:
        p = pairs[MODES_STRICT]
        text.append(f"ALI vs GAN at the same {pairs['settings']} setting(s), strict modes: "
                    f"ahead {p['ahead']}, tied {p['tied']}, behind {p['behind']} "
                    f"(mean difference {p['mean_difference']:+.1f})")
    for model, e in summary.items():
        if "best" in e:
            b, s = e["best"], e["best"]["setting"]
            text.append(f"best {model}: {b.get(MODES_STRICT)}/25 strict, "
                        f"{100 * b.get(HIGH_QUALITY, 0):.1f}% high quality, "
                        f"{b.get(MODES_PAPER)}/25 paper's count — lr {s.get('lr', 0):.3g}, "
                        f"beta1 {s.get('beta1', 0):.2f}, init std {s.get('init_std', 0):.3g}, "
                        f"seed {s.get('seed')}")
    return "\n".join(text)


def flat_metrics(summary: dict) -> dict[str, float]:
    """Summary numbers as MLflow metrics on the parent run: <model>.<metric>_mean etc."""
    out = {}
    for model, e in summary.items():
        for k in (*TOY_METRICS, RECON):
            for stat, v in e.get(k, {}).items():
                if stat != "n":
                    out[f"{model}.{k}_{stat}"] = float(v)
        out[f"{model}.failed_trials"] = float(e["failed"])
    return out


def best_configuration(summary: dict, base: dict, preset: str, model: str = "ali") -> dict | None:
    """The best trial of `model` as a config and the command that trains it alone."""
    e = summary.get(model, {})
    if "best" not in e:
        return None
    s = e["best"]["setting"]
    steps, epochs = base["optim"].get("steps"), base["optim"].get("epochs")
    length = f"--steps {steps}" if steps else f"--epochs {epochs:g}"
    method = f" --method {model}" if model != "ali" else ""
    init = f" --init-std {s['init_std']:.4g}" if "init_std" in s else ""
    base_cfg = config_lib.Config.from_dict(base)
    base_cfg.model.preset = preset
    o = config_lib.resolve(config_lib.for_method(base_cfg, model)).optim   # as the trials
    decay = "" if o.lr_decay == "none" else \
        f" --lr-decay {o.lr_decay} --lr-hold {o.lr_hold:g} --lr-final {o.lr_final:g}"
    cycle = f" --cycle {o.cycle:g}" if model == "ali" else ""
    if cycle and o.cycle and o.cycle_until < 1:
        cycle += f" --cycle-until {o.cycle_until:g}"
    return {"model": model, "setting": s, "metrics": {k: v for k, v in e["best"].items()
                                                      if k not in ("setting", "trial_id")},
            "trial_id": e["best"]["trial_id"],
            "command": f"python -m ali_dist.train --preset {preset}{method} --lr {s['lr']:.4g} "
                       f"--beta1 {s['beta1']:.3f}{init} --seed {s['seed']} {length} "
                       f"--batch-size {base['optim']['batch_size']} --update {o.update}"
                       f"{decay}{cycle} --workers 1"}


# --- image searches: one model, ASHA on the reconstruction ratio ---

def search_rows(result_grid, metric: str = RECON) -> list[dict]:
    rows = []
    for r in result_grid:
        m, s = dict(r.metrics or {}), (r.config or {}).get("setting", {})
        rows.append({"trial_id": m.get("trial_id", "?"), "setting": s, "step": m.get("step"),
                     metric: m.get(metric), "ok": r.error is None and metric in m,
                     "error": None if r.error is None else str(r.error).splitlines()[0][:300]})
    return sorted(rows, key=lambda r: (not r["ok"], r[metric] if r["ok"] else math.inf))


def search_markdown(rows: list[dict], budget: str, metric: str = RECON,
                    steps: int | None = None) -> str:
    lines = [f"Budget: {budget}. Sorted by final {metric} (lower is better); trials ASHA "
             f"stopped early end before the budget's last step.", "",
             f"| trial | lr | beta1 | steps | {metric} | status |", "|---|---|---|---|---|---|"]
    for r in rows:
        s = r["setting"]
        value = f"{r[metric]:.4f}" if r["ok"] else "–"
        status = r["error"] or "no metric" if not r["ok"] else \
            "stopped by ASHA" if steps and (r["step"] or 0) < steps else "finished"
        lines.append(f"| {r['trial_id']} | {s.get('lr', 0):.3g} | {s.get('beta1', 0):.2f} | "
                     f"{r['step']} | {value} | {status} |")
    return "\n".join(lines) + "\n"


# --- Figure 8: each model's best trial's panels (samples, q(z) vs p(z), reconstructions of
# held-out points; `ali_dist.evaluate.grids.toy_figure`), one row per model. The panels are the
# PNGs each trial logged at its final evaluation, so the driver needs no model weights.
PANELS = "toy_panels.png"   # the artifact name `ali_dist.evaluate.evaluate` logs for the toy


def figure8(panels: dict[str, Path]):
    """Stack each model's panel image in a row (their widths differ: a GAN has no encoder
    panels), labelled by model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    images = {m: mpimg.imread(p) for m, p in panels.items()}
    if not images:
        return None
    width = max(im.shape[1] for im in images.values())
    fig, axes = plt.subplots(len(images), 1, squeeze=False,
                             figsize=(width / 100, sum(im.shape[0] for im in images.values())
                                      / 100 + 0.4 * len(images)))
    for ax, (model, im) in zip(axes[:, 0], images.items()):
        ax.imshow(im)
        ax.set_xlim(0, width)
        ax.set_title(model, loc="left", fontsize=12, fontweight="bold")
        ax.axis("off")
    fig.tight_layout()
    return fig
