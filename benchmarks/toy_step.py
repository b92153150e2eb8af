"""The toy preset's training step on ONE CPU core: what a trial-step costs, and what makes it
cheaper (issue 13, "A cheap toy step"). One table and one JSON per run, naming the CPU.

    taskset -c 1 python benchmarks/toy_step.py            # the full run (a few minutes)
    python benchmarks/toy_step.py --quick                 # CI's check (seconds): no compile,
                                                          # no training, K = 1, 2
Every variant is the step the loop trains (`loop.build_step`: `methods.build(cfg)` and
`TrainStep`), built from the same seed and timed on the same toy batch, variants taking turns
round by round so that a shared machine's drift hits all alike. The unit is the paper's
trial-step: batch 100, one D and one E/G update from one forward (simultaneous updates; the
toy preset's recipe trains batch 200 with 2 D updates per E/G update, README "The toy study"):
  eager fp32           the default on CPU (baseline)
  + fused Adam         the same step with `make_optimizers(fused=True)`
  compile              `--compile all` (TrainStep compiles each network)
  compile (D eager)    `--compile on` (the encoder and decoder; README, "Performance")
  bf16 autocast        `--precision bf16` (AVX512-BF16 matmuls where the CPU has them)
  compile + bf16
  amax maxout ...      before: maxout by `amax` (`MaxoutByAmax`), as the networks computed
                       it until this benchmark found its backward the slowest kernel; they
                       now take max(dim)
  batched K=k          K trials as one model (`benchmarks/batched_trials.py`: stacked
                       parameters, vmap over the method's own loss) through the same TrainStep
FLOPs per trial-step are counted with FlopCounterMode on the real step (eager fp32, and the
batched step: vmap's bmm counts alike). The peak is an estimate from lscpu's flags (stated in
the output) unless `--peak-gflops` says otherwise; a large sgemm measured here on the same
core is printed beside it, as the ceiling the matmuls can actually reach.
"Do the metrics hold" for bf16: two short real toy trainings through `loop.run` (fp32 and
bf16, same seed) with the mode metrics of `ali_dist/evaluate/modes.py` at the end.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]   # ali_dist, and batched_trials beside this file
from ali_dist import config as config_lib, loop  # noqa: E402
from ali_dist.data import toy  # noqa: E402
from ali_dist.methods import Batch  # noqa: E402
from batched_trials import Batched  # noqa: E402
from ali_dist.models.networks import Maxout  # noqa: E402
from ali_dist.step import TrainStep, make_optimizers  # noqa: E402

OUT = HERE / "results" / "toy_step_cpu.json"
SEED = 0


# ---- the machine -----------------------------------------------------------------------------

def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def peak_estimate(override: float | None) -> tuple[float | None, str]:
    """fp32 GFLOP/s of one core: FMA units x fp32 lanes x 2 (an FMA is 2 FLOPs) x GHz."""
    if override:
        return override, "--peak-gflops"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None, "lscpu failed: pass --peak-gflops"
    flags = set(re.search(r"Flags:\s*(.*)", out).group(1).split()) if "Flags:" in out else set()
    mhz = re.search(r"CPU max MHz:\s*([\d.]+)", out)
    if mhz is None:    # a VM often shows no max clock: /proc/cpuinfo's current one instead
        mhz = re.search(r"cpu MHz\s*:\s*([\d.]+)", Path("/proc/cpuinfo").read_text())
    if mhz is None:
        return None, "unknown clock: pass --peak-gflops"
    ghz = float(mhz.group(1)) / 1e3
    lanes, isa = (16, "AVX-512") if "avx512f" in flags else \
        (8, "AVX2+FMA") if {"avx2", "fma"} <= flags else (4, "SSE")
    note = (f"estimate: 2 FMA units x {lanes} fp32 lanes ({isa}) x 2 FLOP x {ghz:.2f} GHz"
            f" = {4 * lanes} FLOP/cycle")
    family = re.search(r"cpu family\s*:\s*(\d+)", Path("/proc/cpuinfo").read_text())
    if "AMD" in cpu_name() and lanes == 16 and family and family.group(1) == "25":
        # Zen 4 (family 25) runs a 512-bit FMA on its two 256-bit pipes: 32 FLOP/cycle
        note += "; AMD Zen 4 executes AVX-512 on 256-bit pipes, so its real peak is half this"
    return 2 * lanes * 2 * ghz, note


def sgemm_gflops(dtype=torch.float32, n: int = 1024, reps: int = 5) -> float:
    """A large matmul on this core: the ceiling the step's matmuls could reach."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t)
    return 2 * n**3 / min(ts) / 1e9


# ---- the steps ---------------------------------------------------------------------------------

def toy_cfg(precision: str = "fp32", compile: str = "off", seed: int = SEED,
            **run) -> config_lib.Config:
    cfg = config_lib.Config()
    cfg.model.preset, cfg.model.method = "toy", "ali"
    cfg.optim.precision, cfg.optim.compile = precision, compile
    cfg.optim.update, cfg.optim.batch_size = "simultaneous", 100     # the paper's trial-step
    cfg.optim.cycle = 0.0                                  # ... of the paper's game
    cfg.run.seed = seed
    for k, v in run.items():
        section = next(s for s in (cfg.optim, cfg.run, cfg.eval) if hasattr(s, k))
        setattr(section, k, v)
    return config_lib.resolve(cfg)


def toy_batches(k: int, batch: int) -> torch.Tensor:
    """(k, batch, 2): trial i's batch from its own generator (each trial its own data)."""
    return torch.stack([toy.sample(batch, torch.Generator().manual_seed(1000 + i))
                        for i in range(k)])


class MaxoutByAmax(Maxout):
    """Before: maxout by `amax` (whose backward compares every piece with the maximum: slow
    in eager bf16, and inductor's kernel for it took ~4.5 ms a call). The same values as the
    networks' `max(dim)`; at a tie every piece gets a share of the gradient."""

    def forward(self, x):
        b, c = x.shape[:2]
        return x.view(b, c // self.pieces, self.pieces, *x.shape[2:]).amax(dim=2)


def ordinary(precision="fp32", compile="off", fused=False, amax=False):
    """(method, TrainStep, one batch, trials) as the loop builds them."""
    cfg = toy_cfg(precision, compile)
    method, _, step = loop.build_step(cfg, torch.device("cpu"))
    if amax:    # before the first step: compile traces the forward then
        for mod in method.modules():
            if isinstance(mod, Maxout):
                mod.__class__ = MaxoutByAmax
    if fused:     # the same step with the other Adam implementation
        o = cfg.optim
        step = TrainStep(method, make_optimizers(method, o.lr, o.beta1, o.beta2, fused=True),
                         torch.device("cpu"), precision)
    return method, step, toy_batches(1, cfg.optim.batch_size)[0], 1


def batched(k: int, precision="fp32"):
    """K trials, trial i built as the loop builds a run of seed SEED + i, as one model."""
    trials = [loop.build_step(toy_cfg(precision, seed=SEED + i), torch.device("cpu"))[0]
              for i in range(k)]
    method = Batched(trials)
    o = toy_cfg(precision).optim
    step = TrainStep(method, make_optimizers(method, o.lr, o.beta1, o.beta2),
                     torch.device("cpu"), precision)
    return method, step, toy_batches(k, o.batch_size), k


def count_flops(method, step, x) -> float:
    from torch.utils.flop_counter import FlopCounterMode
    stage = method.stages(10**9)[0]
    with FlopCounterMode(display=False) as c:
        step(Batch(x), stage, 0)
    return float(c.get_total_flops())


def k1_equivalence(steps: int = 3) -> dict:
    """The ordinary step and the K=1 batched step from the same weights, batch and noise:
    the largest difference in any metric (losses included) per step, and in any parameter or
    batch-norm statistic afterwards."""
    method, step, x, _ = ordinary()
    bm = Batched([copy.deepcopy(method)])
    o = toy_cfg().optim
    bstep = TrainStep(bm, make_optimizers(bm, o.lr, o.beta1, o.beta2), torch.device("cpu"),
                      "fp32")
    stage = method.stages(10**9)[0]
    diffs = []
    for s in range(steps):
        torch.manual_seed(100 + s)                # the same prior and encoder noise
        a = step(Batch(x), stage, s)
        torch.manual_seed(100 + s)
        b = bstep(Batch(x[None]), stage, s)
        diffs.append(max(float((a[k] - b[k][0]).abs()) for k in a))
    want, got = method.model.state_dict(), bm.trial(0).state_dict()
    state = max(float((want[k].double() - got[k].double()).abs().max()) for k in want)
    return {"steps": steps, "metric_max_abs_diff": max(diffs),
            "metric_max_abs_diff_step0": diffs[0], "state_max_abs_diff": state,
            "loss_names": sorted(a)}


# ---- timing ----------------------------------------------------------------------------------

def measure(variants: dict, warmup: int, steps: int, rounds: int) -> dict:
    """Per variant: every timed step's seconds, trials per step, warm-up seconds. A variant
    that fails to build or run is recorded with its error (in `failed`), not measured."""
    built, failed = {}, {}
    for name, make in variants.items():
        t = time.perf_counter()
        try:
            method, step, x, k = make()
            stage = method.stages(10**9)[0]
            for i in range(warmup):
                step(Batch(x), stage, i)
        except Exception as e:  # noqa: BLE001 - a variant PyTorch cannot run is a result
            failed[name] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200]}"
            print(f"  {name} failed: {failed[name]}", flush=True)
            continue
        built[name] = (method, step, stage, x, k, time.perf_counter() - t)
        print(f"  built and warmed up {name} ({built[name][5]:.1f} s)", flush=True)
    times = {n: [] for n in built}
    for r in range(rounds):
        for name, (method, step, stage, x, k, _) in built.items():
            for i in range(steps):
                t = time.perf_counter()
                step(Batch(x), stage, warmup + r * steps + i)
                times[name].append(time.perf_counter() - t)
    return {n: {"times": times[n], "trials": built[n][4], "warmup_s": built[n][5],
                "compiled": bool(getattr(built[n][1], "compiled", [])),
                "built": built[n]} for n in built}, failed


# ---- does bf16 keep the metrics --------------------------------------------------------------

def train(precision: str, steps: int, seed: int) -> dict:
    cfg = toy_cfg(precision, seed=seed, steps=steps, log_every=steps, eval_every=steps,
                  checkpoint_every=steps)
    reports = []
    t = time.perf_counter()
    loop.run(cfg, torch.device("cpu"), lambda m, s: reports.append(m))
    wall = time.perf_counter() - t
    final = reports[-1]
    keep = ("modes_paper", "modes_strict", "high_quality", "reverse_kl", "recon_ratio",
            "loss_d", "loss_g")
    return {"precision": precision, "steps": steps, "seed": seed, "wall_s": wall,
            **{k: float(final[k]) for k in keep if k in final}}


# ---- main ------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="seconds: no compile, no training, "
                    "K = 1, 2, few steps (CI's check of the fields)")
    ap.add_argument("--ks", default="1,4,16,32", help="trials per batched model")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=15, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--train-steps", type=int, default=1500,
                    help="the bf16 check's trainings (0: skip)")
    ap.add_argument("--train-seed", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--peak-gflops", type=float, default=None,
                    help="the core's fp32 peak (default: estimated from lscpu)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    if args.quick:
        args.ks, args.warmup, args.steps, args.rounds = "1,2", 1, 2, 1
        args.train_steps, args.no_compile = 0, True
    torch.set_num_threads(1)      # the unit: one core (pin the process with taskset)
    ks = [int(k) for k in args.ks.split(",")]

    variants = {"eager fp32": ordinary,
                "eager fp32 + fused Adam": lambda: ordinary(fused=True),
                "bf16 autocast": lambda: ordinary("bf16")}
    if not args.no_compile:
        variants["compile"] = lambda: ordinary(compile="all")
        variants["compile (D eager)"] = lambda: ordinary(compile="on")
        variants["compile + bf16"] = lambda: ordinary("bf16", compile="all")
    variants["amax maxout fp32 (before)"] = lambda: ordinary(amax=True)
    variants["amax maxout bf16"] = lambda: ordinary("bf16", amax=True)
    if not args.no_compile:
        variants["amax maxout compile"] = lambda: ordinary(compile="all", amax=True)
        variants["amax maxout compile + bf16"] = lambda: ordinary("bf16", "all", amax=True)
    for k in ks:
        variants[f"batched K={k}"] = lambda k=k: batched(k)
    if not args.quick:         # does bf16 change the batched picture?
        variants[f"batched K={max(ks)} + bf16"] = lambda: batched(max(ks), "bf16")

    print(f"toy step on {cpu_name()}, torch {torch.__version__}, 1 thread, affinity "
          f"{sorted(os.sched_getaffinity(0))}", flush=True)
    res, failed = measure(variants, args.warmup, args.steps, args.rounds)
    method, step, _, x, _, _ = res["eager fp32"]["built"]
    flops = count_flops(method, step, x)
    bflops = {}
    for name, r in res.items():
        if name.startswith("batched") and "bf16" not in name:
            m, s, _, xb, k, _ = r["built"]
            bflops[name] = count_flops(m, s, xb) / k
    peak, peak_note = peak_estimate(args.peak_gflops)
    ceiling = {"fp32": sgemm_gflops(), "bf16": sgemm_gflops(torch.bfloat16)}

    base = statistics.median(res["eager fp32"]["times"])
    rows = []
    for name, r in res.items():
        med = statistics.median(r["times"])
        k = r["trials"]
        f = bflops.get(name, flops)
        tps = k / med
        rows.append({"variant": name, "trials": k, "ms_per_step": 1e3 * med,
                     "ms_per_step_min": 1e3 * min(r["times"]),
                     "ms_per_trial_step": 1e3 * med / k, "trial_steps_per_s": tps,
                     "vs_eager": base / (med / k), "flops_per_trial_step": f,
                     "gflops": f * tps / 1e9,
                     "share_of_peak": f * tps / 1e9 / peak if peak else None,
                     "share_of_sgemm": f * tps / 1e9 / ceiling["fp32"],
                     "warmup_s": r["warmup_s"],
                     "compiled": r["compiled"] if "compile" in name else None})
    if not args.no_compile:
        for r in rows:
            if "compile" in r["variant"] and not r["compiled"]:
                r["note"] = "compiling failed: the step ran eagerly"

    eq = k1_equivalence()
    training = [train(p, args.train_steps, args.train_seed) for p in ("fp32", "bf16")] \
        if args.train_steps else []

    out = {"benchmark": "toy_step", "cpu": cpu_name(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "affinity": sorted(os.sched_getaffinity(0)),
           "load_average_1min": round(os.getloadavg()[0], 2), "quick": args.quick,
           "batch": toy_cfg().optim.batch_size, "warmup": args.warmup,
           "steps_per_round": args.steps, "rounds": args.rounds,
           "flops_per_step": flops, "flops_note": "FlopCounterMode on the eager fp32 step; the "
           "compile and bf16 variants do the same arithmetic; batched rows: counted on them",
           "peak_gflops": peak, "peak_note": peak_note,
           "sgemm_gflops": ceiling, "rows": rows, "failed": failed, "k1_equivalence": eq,
           "bf16_training": training}
    print_table(out)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


def print_table(out: dict) -> None:
    print(f"\ntoy step, 1 core of {out['cpu']} (torch {out['torch']}), batch {out['batch']}: "
          f"{out['flops_per_step'] / 1e9:.3f} GFLOP per trial-step")
    print(f"peak {out['peak_gflops'] or float('nan'):.0f} GFLOP/s ({out['peak_note']}); "
          f"measured 1024^3 sgemm {out['sgemm_gflops']['fp32']:.0f} GFLOP/s, bf16 "
          f"{out['sgemm_gflops']['bf16']:.0f}")
    head = f"{'variant':<30}{'ms/step':>9}{'trial-steps/s':>15}{'x eager':>9}" \
           f"{'GFLOP/s':>9}{'% peak':>8}{'% sgemm':>9}{'warm-up s':>11}"
    print(head + "\n" + "-" * len(head))
    for r in out["rows"]:
        share = f"{100 * r['share_of_peak']:.0f}" if r["share_of_peak"] else "?"
        print(f"{r['variant']:<30}{r['ms_per_step']:>9.1f}{r['trial_steps_per_s']:>15.1f}"
              f"{r['vs_eager']:>9.2f}{r['gflops']:>9.1f}{share:>8}"
              f"{100 * r['share_of_sgemm']:>9.0f}{r['warmup_s']:>11.1f}"
              + (f"  ({r['note']})" if r.get("note") else ""))
    for name, why in out["failed"].items():
        print(f"{name:<30}failed: {why}")
    eq = out["k1_equivalence"]
    print(f"\nK=1 batched vs ordinary step ({eq['steps']} steps, same weights, batch, noise): "
          f"max |diff| metrics {eq['metric_max_abs_diff']:.2e} (step 0: "
          f"{eq['metric_max_abs_diff_step0']:.2e}), parameters and BN statistics "
          f"{eq['state_max_abs_diff']:.2e}")
    for t in out["bf16_training"]:
        print(f"training {t['precision']}: {t['steps']} steps seed {t['seed']} in "
              f"{t['wall_s']:.0f} s: modes paper {t.get('modes_paper')}, strict "
              f"{t.get('modes_strict')}, high quality {100 * t.get('high_quality', 0):.1f} %, "
              f"reverse KL {t.get('reverse_kl', float('nan')):.3f}, recon ratio "
              f"{t.get('recon_ratio', float('nan')):.3f}")


if __name__ == "__main__":
    sys.exit(main())
