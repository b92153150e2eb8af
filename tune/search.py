"""`python -m tune.search`: Ray Tune studies of ali-dist, one command for every preset.

    python -m tune.search                       the toy study at the laptop budget
    python -m tune.search --budget ci           the same, in about a minute
    python -m tune.search --preset digits --budget laptop
    python -m tune.search --preset digits --method kplus1      (ASHA on the test error)
    python -m tune.search --preset celeba64 --data /shards/celeba64 --budget paper --workers 8
    python -m tune.search --preset digits --name my-search --resume   (after the driver died)
    python -m tune.search --recipe --budget laptop   ASHA over the toy's training recipe

The toy preset runs the paper's study (section 4.5): every model (ALI, GAN and the Figure 8
baselines) trained at the same random settings of lr, beta1 and init std, in-process trials,
a table of both mode counts, Figure 8. Image presets (or the toy with --runner torch) run an
ASHA search over lr and beta1 on the reconstruction ratio (or, for a method that classifies,
the test error), one distributed TorchTrainer per trial. `--recipe` searches the toy's
training recipe instead (schedule, beta1, batch, update scheme, init, batch norm) with ASHA
on strict modes x high-quality share, then trains the best at fresh seeds. Everything goes
to MLflow: a parent run per study, a child run per trial.
"""
from __future__ import annotations

import argparse
import sys
import time

from ali_dist.config import METHOD_NAMES
from ali_dist.methods.adversarial import UPDATES
from ali_dist.models import PRESETS, get_preset
from ali_dist.schedule import DECAYS

from .space import BUDGETS
from .study import MODELS


def _budget_help() -> str:
    lines = []
    for kind, budgets in BUDGETS.items():
        for name, b in budgets.items():
            lines.append(f"  {name:7s} {kind}: {b.describe(kind)} — {b.about}")
    return "\n".join(lines)


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m tune.search", description=__doc__.split("\n\n")[0].split(": ", 1)[1] + " "
        "The toy preset runs the paper's toy study; image presets run an ASHA search.",
        epilog="Budgets (trials x length; --trials/--steps/--epochs/--eval-every override "
               "them):\n" + _budget_help() + "\n\nRay: joins RAY_ADDRESS when set, else starts "
               "a local Ray. MLflow: MLFLOW_TRACKING_URI when set, else SQLite under "
               "ALI_DIST_HOME (~/.cache/ali_dist). Tables are written to --out and to the "
               "study's MLflow parent run.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--preset", default="toy", choices=tuple(PRESETS),
      help="architecture and hyper-parameters searched around [default: toy]")
    a("--data", help="training data for image presets (as `python -m ali_dist.train --data`); "
                     "default: the preset's embedded data")
    a("--config", help="YAML training config (sections model/data/optim/run, as for "
                       "`python -m ali_dist.train`) every trial starts from; the search's own "
                       "flags override it")
    g = p.add_argument_group("budget")
    g.add_argument("--budget", default="laptop", choices=tuple(BUDGETS["toy"]),
                   help="named budget, see below [default: laptop]")
    g.add_argument("--trials", type=int, help="random settings (toy: each trained by every "
                                              "model; images: trials of the search)")
    g.add_argument("--steps", type=int, help="training steps per trial")
    g.add_argument("--epochs", type=float, help="training epochs per trial instead of --steps")
    g.add_argument("--eval-every", type=int, help="steps between evaluations (mode counts; "
                                                  "reconstruction ratio for ASHA)")
    g = p.add_argument_group("toy study")
    g.add_argument("--models", default=",".join(MODELS),
                   help=f"comma-separated models of the toy study [default: all: "
                        f"{','.join(MODELS)}]")
    g.add_argument("--runner", default="auto", choices=("auto", "inprocess", "torch"),
                   help="auto: the toy's trials train in-process (the study), image presets "
                        "through TorchTrainer (the search); torch on the toy runs the ASHA "
                        "search through TorchTrainer instead")
    g = p.add_argument_group("recipe search (toy)")
    g.add_argument("--recipe", action="store_true",
                   help="search ALI's toy training recipe (lr and its schedule, beta1, batch, "
                        "update scheme and D steps, init std, batch-norm momentum) with ASHA "
                        "on strict modes / 25 x high-quality share (budgets ci, laptop, long; "
                        "--grace-steps and --reduction-factor below apply)")
    g.add_argument("--seeds", type=int, default=3,
                   help="with --recipe: fresh seeds the best recipe is trained at afterwards; "
                        "their mean is the recipe's result; 0: the search alone (a later "
                        "--resume with --seeds N trains them) [default: 3]")
    g = p.add_argument_group("search (image presets, or --runner torch)")
    g.add_argument("--method", default="ali", choices=METHOD_NAMES,
                   help="the method searched; ASHA ranks trials by the reconstruction ratio "
                        "(methods with an encoder) or the test error (kplus1, classifier: "
                        "--config's data.labels sets the labelled images); a GAN has neither: "
                        "the toy study compares it [default: ali]")
    g.add_argument("--workers", type=int, default=1, help="Ray Train workers per trial "
                                                          "[default: 1]")
    g.add_argument("--cpus-per-worker", type=float, default=1, help="[default: 1]")
    g.add_argument("--gpus-per-worker", type=float,
                   help="default: 1 where the cluster has GPUs, else 0")
    g.add_argument("--grace-steps", type=int, help="ASHA's grace period: no trial is stopped "
                                                   "before this step [default: --eval-every; "
                                                   "with --recipe 3x that, as samples "
                                                   "sharpen late]")
    g.add_argument("--reduction-factor", type=float, default=3,
                   help="ASHA keeps 1 in this many trials at each rung [default: 3]")
    g = p.add_argument_group("training (every trial; default: the preset's)")
    g.add_argument("--batch-size", type=int, help="batch per worker")
    g.add_argument("--update", choices=UPDATES,
                   help="simultaneous (the original code) or alternating D and E/G updates")
    g.add_argument("--lr-decay", choices=DECAYS,
                   help="learning-rate decay after --lr-hold, down to --lr-final x the "
                        "trial's lr at its last step (long runs sharpen their samples as the "
                        "rate falls)")
    g.add_argument("--lr-hold", type=float, help="share of the steps at the full rate")
    g.add_argument("--lr-final", type=float, help="the last step's rate as a share of lr")
    g.add_argument("--cycle", type=float,
                   help="weight of ALI's explicit cycle term (10 x the MSE of G(E(x)) in the "
                        "toy's recipe; 0: the paper's game); other models train without it")
    g = p.add_argument_group("run")
    g.add_argument("--concurrency", type=int,
                   help="trials at a time [default: toy: the CPU cores; search: as many as "
                        "the cluster's GPUs (or cores) hold, at most 2 on CPU]")
    g.add_argument("--seed", type=int, default=0, help="seed of the random settings "
                                                       "[default: 0]")
    g.add_argument("--name", help="study name in Ray storage and MLflow "
                                  "[default: <preset>-study-<time> / <preset>-search-<time>]")
    g.add_argument("--storage", help="Ray storage: a local path or URI [default: ./ali_runs]")
    g.add_argument("--experiment", default="ali-dist-tune",
                   help="MLflow experiment [default: ali-dist-tune]")
    g.add_argument("--resume", action="store_true",
                   help="continue the study called --name (Tuner.restore): finished trials "
                        "are kept, unfinished ones continue from their last checkpoint")
    g.add_argument("--out", help="directory for study_table.md/.json, trials.json, "
                                 "best_config.json and figure8.png [default: the study's "
                                 "directory in local storage]")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    preset = get_preset(args.preset)
    study_kind = "toy" if (not preset.is_image and args.runner != "torch") else "search"
    if args.recipe:
        if preset.is_image or args.runner == "torch":
            print("error: --recipe searches the toy preset's recipe in-process; image presets "
                  "search lr and beta1 (leave out --recipe)", file=sys.stderr)
            return 2
        if args.seeds < 0:
            print(f"error: --seeds must be 0 or more, got {args.seeds}", file=sys.stderr)
            return 2
        study_kind = "recipe"
    if preset.is_image and args.runner == "inprocess":
        print("error: --runner inprocess trains the toy study only; image presets search "
              "through TorchTrainer", file=sys.stderr)
        return 2
    args.name = args.name or f"{args.preset}-{study_kind if study_kind != 'toy' else 'study'}" \
                             f"-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        if study_kind == "recipe":
            from . import recipe
            recipe.run(args)
        elif study_kind == "toy":
            from . import toy_study
            toy_study.run(args)
        else:
            from . import image_search
            image_search.run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
