"""`python -m ali_dist.evaluate RUN`: every evaluation of a trained model, logged into its MLflow
run (or, with --no-mlflow, printed and written as a JSON report), with one HTML page that shows
the grids beside the numbers.

    python -m ali_dist.evaluate <mlflow run id | runs:/<id>/model | run dir | model dir>
        [--data PATH] [--metrics recon,probe,fid,classify,attributes] [--inception PATH]
        [--fid-samples N] [--probe-labels N] [--no-mlflow] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .. import config as config_lib
from . import grids as G
from . import hooks, report, suite

CLI_METRICS = ("recon",) + suite.METRICS
GRID_IMAGES = 100          # a 10 x 10 grid, as in the paper's figures
RECON_IMAGES = 1000        # held-out images the reconstruction error is averaged over
INTERPOLATION_ROWS = 10
INPAINT_ROWS = 10


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ali_dist.evaluate",
        description="Evaluate a trained model: grids (samples, reconstructions, latent "
                    "interpolations, centre-crop inpainting), reconstruction error against the "
                    "random-pair baseline, the L2-SVM probe, FID and KID, a K+1 model's test "
                    "error, attribute accuracy of reconstructions; logged into the model's "
                    "MLflow run with one HTML report page (evaluation/report.html).",
        epilog="MLflow: MLFLOW_TRACKING_URI when set, else the SQLite store under "
               "~/.cache/ali_dist (ALI_DIST_HOME), as for training. FID/KID read Inception "
               "weights from --inception, $ALI_DIST_INCEPTION or the [fid] extra's file; "
               "nothing is downloaded.")
    p.add_argument("run", metavar="RUN",
                   help="an MLflow run id, a runs:/<id>[/model] URI, a training run's directory "
                        "in Ray storage, an exported model directory (--output of training) or "
                        "a checkpoint directory")
    p.add_argument("--data", help="data to evaluate on, as training's --data (default: the "
                                  "run's own, from its saved config)")
    p.add_argument("--val-data", help="held-out shards, as training's --val-data (default: the "
                                      "run's)")
    p.add_argument("--loader", choices=("auto", "dali", "webdataset"),
                   help="input pipeline (default: the run's)")
    p.add_argument("--metrics", default="all",
                   help=f"comma-separated, from {', '.join(CLI_METRICS)}; 'all': every one "
                        f"that applies to the model and data (fid only where Inception weights "
                        f"are found) [default: all]")
    p.add_argument("--no-mlflow", action="store_true",
                   help="log nothing to MLflow: print the metrics and write the JSON report, "
                        "the grids and report.html to --out")
    p.add_argument("--out", help="directory for metrics.json, report.html and the grid PNGs "
                                 "(default: ./ali_eval/<run name>; with MLflow they are also "
                                 "logged under the run's evaluation/)")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--seed", type=int, default=1234,
                   help="seed of the samples' z, so that two evaluations draw the same ones")
    config_lib.add_arguments(p, sections=("eval",), exclude=("metrics",))
    return p


def chosen_metrics(spec: str) -> tuple[tuple[str, ...], bool]:
    """(--metrics names, whether 'all' was asked: then what does not apply is skipped)."""
    if spec.strip() == "all":
        return CLI_METRICS, True
    names = tuple(n.strip() for n in spec.split(",") if n.strip())
    unknown = [n for n in names if n not in CLI_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(CLI_METRICS)} or all")
    return names, False


def _held_out(loader, n: int):
    """The first n validation images (training images where there is no split) and their
    labels or attributes (None for unlabelled data)."""
    split = "val" if loader.split("val") is not None else "train"
    return loader.labelled(split, n)


def make_grids(model, loader, seed: int) -> dict[str, tuple[np.ndarray, str]]:
    """Every grid that applies: name -> (image, caption giving its layout)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    if not model.preset.is_image:
        return out
    x, y = _held_out(loader, GRID_IMAGES)
    out["samples"] = (G.to_uint8_grid(hooks.sample(model, GRID_IMAGES, gen,
                                                   y if hooks.conditional(model) else None), 10),
                      "samples G(z), z ~ N(0, I), 10 a row")
    out.update(conditional_grids(model, loader, gen))
    if model.encoder is None:
        return out
    half = x[:GRID_IMAGES // 2]
    yh = None if y is None else y[:GRID_IMAGES // 2]
    for level in hooks.levels(model):
        s = hooks.level_suffix(level)
        z = f" from {s[1:]}" if s else ""
        out[f"reconstructions{s}"] = (
            G.reconstruction_grid(half, hooks.reconstruct(model, half, yh, level)),
            f"odd columns: held-out images; even columns: their reconstructions G(E(x)){z}")
        k = min(INTERPOLATION_ROWS, len(x) // 2)
        out[f"interpolations{s}"] = (
            G.interpolation_grid(model, x[0:2 * k:2], x[1:2 * k:2], level=level,
                                 y1=None if y is None else y[0:2 * k:2]),
            f"a row per pair of held-out images: the first image, 8 decodings of "
            f"(1 - t) E(x1) + t E(x2) for t from 0 to 1 (E: the encoder's mean{z}), the "
            f"second image (the paper's Figure 6)")
        out[f"inpainting{s}"] = (
            G.inpainting_grid(model, x[:INPAINT_ROWS], level=level,
                              y=None if y is None else y[:INPAINT_ROWS]),
            f"a row per held-out image: the original, its centre half masked (grey), then "
            f"the fill after {', '.join(map(str, G.INPAINT_SNAPSHOTS))} iterations of "
            f"x <- G(E(x)){z} with the known pixels put back after each")
    return out


def conditional_grids(model, loader, gen) -> dict[str, tuple[np.ndarray, str]]:
    """Hook for conditional models: the grids the model's branch provides in `grids.py`
    (`class_conditional_grid`, `attribute_sequence_grid`), where they exist."""
    if not hooks.conditional(model):
        return {}
    fn = getattr(G, "class_conditional_grid", None)
    if getattr(model.preset, "condition", "class") == "class" and fn is not None:
        return {"conditional": (fn(model, gen), "a row per class, a column per shared z")}
    fn = getattr(G, "attribute_sequence_grid", None)
    names = getattr(getattr(loader, "train", None), "attributes", None)
    if fn is not None and names:
        return {"conditional": (fn(model, list(names), gen),
                                "one z under the paper's Figure 7 attribute sequence")}
    return {}


def toy_grids(model, loader) -> dict[str, tuple[np.ndarray, str]]:
    fig = G.toy_figure(model, loader.validation_batch(2500), model.name.upper())
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()
    import matplotlib.pyplot as plt
    plt.close(fig)
    return {"toy_panels": (img, "data, samples, q(z) against p(z), reconstructions")}


def compute_metrics(model, loader, names, skip_inapplicable: bool, eval_cfg,
                    notes: list[str]) -> dict[str, float]:
    from . import mode_metrics, reconstruction_error
    out: dict[str, float] = {}
    if not model.preset.is_image:
        gen = torch.Generator().manual_seed(1234)
        out.update(mode_metrics(model.decode, gen, model.z_dim, next(model.parameters()).device))
    for name in names:
        t0 = time.perf_counter()
        if name == "recon":
            if model.encoder is None:
                notes.append("recon: skipped, the model has no encoder")
                continue
            x, y = _held_out(loader, RECON_IMAGES) if model.preset.is_image else \
                (loader.validation_batch(2500), None)
            # hook: conditional models pass y (the HALI branch's signature); levels are its own
            out.update(reconstruction_error(model, x, y) if hooks.conditional(model)
                       else reconstruction_error(model, x))
            continue
        why = suite.applicable(name, model, loader)
        if name == "fid" and why is None and eval_cfg.inception is None:
            from .fid import default_inception
            if default_inception() is None:
                why = ("no Inception weights here (--inception, $ALI_DIST_INCEPTION or the "
                       "[fid] extra)")
        if name == "probe" and why is None and not eval_cfg.probe_labels:
            why = "--probe-labels 0"
        if why is not None:
            if not skip_inapplicable:
                raise ValueError(f"--metrics {name}: {why}")
            notes.append(f"{name}: skipped, {why}")
            continue
        out.update(suite.compute(name, model, loader, eval_cfg))
        notes.append(f"{name}: {time.perf_counter() - t0:.0f} s")
    return out


def _eval_config(saved: dict, args) -> "config_lib.Config":
    """The run's config with this command's data and eval flags over it."""
    cfg = config_lib.Config.from_dict(saved)
    for field, value in (("data", args.data), ("val_data", args.val_data),
                         ("loader", args.loader)):
        if value is not None:
            setattr(cfg.data, field, value)
    given = {k.split(".", 1)[1]: v for k, v in vars(args).items()
             if k.startswith("eval.") and v is not None}
    for key, value in given.items():
        setattr(cfg.eval, key, value)
    if "probe_labels" not in given:     # a run that skipped the probe is still probed here
        from ..models import get_preset
        cfg.eval.probe_labels = cfg.eval.probe_labels or get_preset(cfg.model.preset).probe_labels
    return cfg


def run(args) -> dict:
    """Evaluate; returns the JSON report (also written to --out/metrics.json)."""
    from ..api import load
    from ..data import make_loader
    from ..train import _prepare_data
    from .source import last_step, resolve

    names, all_ = chosen_metrics(args.metrics)
    src = resolve(args.run, mlflow=not args.no_mlflow)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cfg = _eval_config(src.config, args)
    _prepare_data(cfg)                             # the embedded digits: converted if need be
    model = load(src.model_dir, device)
    loader = make_loader(cfg, 0, 1, device)
    notes: list[str] = []
    with torch.no_grad():
        grids = make_grids(model, loader, args.seed) if model.preset.is_image \
            else toy_grids(model, loader)
    metrics = compute_metrics(model, loader, names, all_, cfg.eval, notes)
    step = src.step if src.step is not None else (last_step(src.run) if src.run else 0)
    m = cfg.model
    title = f"{src.name}: {m.method} on {m.preset}" + (f", step {step}" if step else "")
    out = Path(args.out or Path("ali_eval") / src.name).resolve()
    out.mkdir(parents=True, exist_ok=True)
    page = report.render(title, metrics, grids, cfg.to_dict(),
                         [f"model: {src.model_dir}", f"data: {cfg.data.data}"] + notes)
    result = {"run": args.run, "mlflow_run_id": src.run.run_id if src.run else None,
              "model_dir": str(src.model_dir), "step": step, "metrics": metrics,
              "grids": {k: f"{k}.png" for k in grids}, "notes": notes,
              "config": cfg.to_dict(), "report": "report.html"}
    for name, (img, _) in grids.items():
        (out / f"{name}.png").write_bytes(report.png_bytes(img))
    (out / "report.html").write_text(page)
    (out / "metrics.json").write_text(json.dumps(result, indent=2, default=str))
    if src.run is not None:
        _log(src.run, metrics, grids, page, result, step)
    result["out"] = str(out)
    return result


def _log(ref, metrics: dict, grids: dict, page: str, result: dict, step: int) -> None:
    """Into the run: the metrics at its last step, the grids and the page under evaluation/."""
    from ..tracking import Tracker
    tracker = Tracker(ref, warn=lambda msg: print(msg, file=sys.stderr))
    tracker.metrics(metrics, step)
    for name, (img, _) in grids.items():
        tracker.image(img, f"evaluation/{name}.png")
    tracker.text(page, "evaluation/report.html")
    tracker.text(json.dumps(result, indent=2, default=str), "evaluation/metrics.json")
    tracker.tag("evaluated", time.strftime("%Y-%m-%d %H:%M:%S"))
    tracker.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    width = max((len(k) for k in result["metrics"]), default=0)
    for k, v in sorted(result["metrics"].items()):
        print(f"{k:<{width}}  {v:.4g}")
    for note in result["notes"]:
        print(f"  ({note})")
    where = f"MLflow run {result['mlflow_run_id']} (evaluation/)" if result["mlflow_run_id"] \
        else "no MLflow run"
    print(f"report: {result['out']}/report.html, metrics.json; logged to {where}")
    return 0
