"""The training loop of one data-parallel process: build, restore, iterate, step, evaluate,
report, checkpoint. It knows nothing of Ray: `worker.py` runs it inside Ray Train and passes a
`report` callable; tests and benchmarks call it directly.
"""
from __future__ import annotations

import copy
import hashlib
import math
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch

from . import checkpoint, distributed, methods, schedule
from .config import Config
from .data import make_loader
from .evaluate import evaluate, probe, suite
from .methods import Batch
from .models.networks import init_output_bias
from .distributed import DDPOptions
from .step import (TrainStep, configure_device, make_optimizers, resolve_compile,
                   resolve_switch)
from .tracking import Tracker

def say(msg: str) -> None:
    """A progress line. Written to the process's real stdout: Ray Train V2 patches `print`
    and, where stdout has been wrapped, would emit every line twice."""
    print(f"[ali_dist] {msg}", file=sys.__stdout__ or sys.stdout, flush=True)


# report(metrics, state): hand metrics (and, at checkpoints, the state to save) to the runner.
Report = Callable[[dict, "dict | None"], None]


@dataclass
class Meter:
    """Running sums of the step metrics between two progress lines (kept on the device, so
    logging costs one sync per interval, not per step). A metric some steps lack (a lazy
    penalty's) is averaged over the steps that have it."""
    sums: dict | None = None
    counts: dict | None = None
    n: int = 0

    def add(self, m: dict) -> None:
        if self.sums is None:
            self.sums, self.counts = {}, {}
        for k, v in m.items():
            self.sums[k] = v.clone() if k not in self.sums else self.sums[k] + v
            self.counts[k] = self.counts.get(k, 0) + 1
        self.n += 1

    def pop(self) -> dict:
        out = {k: float(v) / self.counts[k] for k, v in (self.sums or {}).items()}
        self.sums, self.counts, self.n = None, None, 0
        return out


def total_steps(cfg: Config, batches_per_epoch: int) -> int:
    if cfg.optim.steps:
        return int(cfg.optim.steps)
    return max(1, math.ceil(cfg.optim.epochs * batches_per_epoch))


def param_digest(model: torch.nn.Module) -> str:
    """A fingerprint of every parameter's bytes: equal on all ranks when they are in sync."""
    h = hashlib.sha1()
    for p in model.parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def build_step(cfg: Config, device: torch.device):
    """(method, optimisers, TrainStep) as a run trains them, seeded by the config: the loop
    and the benchmarks (`benchmarks/toy_step.py`) build the one step here."""
    torch.manual_seed(cfg.run.seed)  # one init, identical on every rank
    method = methods.build(cfg).to(device)
    if cfg.run.sync_bn:
        method = distributed.convert_sync_batchnorm(method)
    o = cfg.optim
    configure_device(device)
    opt = make_optimizers(method, o.lr, o.beta1, o.beta2)
    step_fn = TrainStep(method, opt, device, o.precision,
                        ddp=DDPOptions(cfg.run.bucket_mb, cfg.run.grad_compression),
                        channels_last=resolve_switch("channels-last", o.channels_last, device),
                        compile=resolve_compile(o.compile, device))
    return method, opt, step_fn


def run(cfg: Config, device: torch.device, report: Report, tracker: Tracker | None = None,
        restored: dict | None = None):
    """Train the config's method to the end of its stages (or the time limit); returns its
    model (what users keep). On divergence, rolls back to the last good state with a lower
    learning rate, or stops: the final report then carries `diverged=1` and the reason is
    tagged in MLflow."""
    rank, world = distributed.world()
    tracker = tracker or Tracker(None)
    method, opt, step_fn = build_step(cfg, device)
    model = method.model
    o = cfg.optim
    if step_fn.compiled and rank == 0:
        say(f"compiling {', '.join(step_fn.compiled)} (the first step takes longer)")
    loader = make_loader(cfg, rank, world, device)
    if model.conditional:
        check_condition(model, loader)
    budget = total_steps(cfg, loader.batches_per_epoch)
    total = method.total_steps(budget)
    method.prepare(loader)

    def load(s: dict) -> int:
        method.load_state_dict(s["method"])
        for g, o_ in opt.items():
            o_.load_state_dict(s["optimizers"][g])
        step_fn.scaler.load_state_dict(s["scaler"])
        loader.load_state_dict(s["loader"])
        checkpoint.set_rng_state(s["rng"][rank % len(s["rng"])])
        return int(s["step"])

    def state() -> dict:
        distributed.sync_buffers_(method)
        return {"method": method.state_dict(), "model": model.state_dict(),
                "optimizers": {g: o_.state_dict() for g, o_ in opt.items()},
                "scaler": step_fn.scaler.state_dict(),
                "step": step, "loader": loader.state_dict(),
                "rng": distributed.all_gather_object(checkpoint.rng_state()),
                "param_digests": distributed.all_gather_object(param_digest(method)),
                "rollbacks": rollbacks, "config": cfg.to_dict()}

    step = rollbacks = 0
    if restored is not None:
        step = load(restored)
        rollbacks = int(restored.get("rollbacks", 0))
        if rank == 0:
            say(f"resumed from step {step}/{total}")
    else:
        torch.manual_seed(cfg.run.seed * 7919 + rank + 1)  # independent noise on each rank
        if model.preset.is_image:  # decoder output starts at the data's mean image
            init_output_bias(model.decoder, _mean_image(loader))
        distributed.broadcast_module_(method)
    good = copy.deepcopy(state())   # what a rollback returns to (CPU-side copy)

    global_batch = cfg.optim.batch_size * world
    meter, batches = Meter(), iter(loader)
    t_start = t_last = t_step = time.perf_counter()
    step_gap = 0.0   # the longest time between two steps' ends in a log interval: a stall shows
    steps_at_last, steps_at_start = step, step
    deadline = t_start + 60 * cfg.run.time_limit if cfg.run.time_limit else math.inf
    stage = None

    def set_stage_and_lr():
        """The stage this step belongs to (started when it changes) and the schedule's rate
        for the step within it, lowered by each rollback so far."""
        nonlocal stage
        current, at = method.stage_at(step, budget)
        if current != stage:
            stage = current
            method.begin_stage(stage)
        lr = o.lr * cfg.run.rollback_lr_factor ** rollbacks * schedule.lr_factor(
            at, stage.steps, o.lr_decay, o.lr_hold, o.lr_final)
        for o_ in opt.values():
            for g in o_.param_groups:
                g["lr"] = lr

    watch = DivergenceWatch(cfg.run.collapse_loss)
    while step < total:
        x, y = next(batches)
        set_stage_and_lr()
        m = step_fn(Batch(x, y), stage, step)
        step += 1
        step_gap, t_step = max(step_gap, time.perf_counter() - t_step), time.perf_counter()
        watch.add(m, step)
        meter.add(m)
        # Between check points the loop never waits for the device: the step's metrics and
        # the divergence flags stay there. At a logging, evaluation or checkpoint step (which
        # wait anyway) one collective says whether any rank diverged or is out of time.
        log_now = step % cfg.run.log_every == 0
        eval_now = step % cfg.run.eval_every == 0
        ckpt_now = step % cfg.run.checkpoint_every == 0
        if not (log_now or eval_now or ckpt_now or step == total):
            continue
        problem = watch.check()
        diverged, out_of_time = distributed.agree(
            [problem is not None, time.perf_counter() > deadline], device)
        if diverged:
            bad_step, why = problem or (step, "another rank diverged")
            msg = f"training diverged at step {bad_step} ({why}; lr {_lr(opt):.3g})"
            if cfg.run.on_divergence == "rollback" and rollbacks < cfg.run.max_rollbacks:
                rollbacks += 1
                step = load(good)
                set_stage_and_lr()
                batches, meter = iter(loader), Meter()
                if rank == 0:
                    say(f"{msg}: rollback {rollbacks}/{cfg.run.max_rollbacks} to "
                        f"step {step}, lr now {_lr(opt):.3g}")
                    tracker.tag(f"rollback_{rollbacks}", msg)
                    tracker.metrics({"rollbacks": rollbacks, "lr": _lr(opt)}, step)
                continue
            if rank == 0:
                say(f"{msg}: stopping (--on-divergence {cfg.run.on_divergence}, "
                    f"{rollbacks} rollback(s) used)")
                tracker.tag("diverged", msg)
            report({"step": step, "diverged": 1, "divergence": msg}, None)
            step_fn.uncompile()
            return model
        last = step == total or out_of_time
        log_now, eval_now, ckpt_now = log_now or last, eval_now or last, ckpt_now or last
        # steps_total: the driver's progress counts a two-stage method's second stage too
        metrics = {"step": step, "steps_total": total, "epoch": step / loader.batches_per_epoch,
                   "lr": _lr(opt), "rollbacks": rollbacks}
        if hasattr(loader, "skipped_samples"):
            metrics["skipped_samples"] = loader.skipped_samples
        if log_now:
            now = time.perf_counter()
            metrics.update(meter.pop())
            metrics["samples_per_s"] = global_batch * (step - steps_at_last) / (now - t_last)
            t_last, steps_at_last = now, step
            metrics["step_gap_max_s"], step_gap = step_gap, 0.0
            if rank == 0:
                eta = (total - step) * (now - t_start) / max(1, step - steps_at_start)
                say(f"step {step}/{total} | {_progress(metrics)} | "
                    f"{metrics['samples_per_s']:.0f} samples/s | eta {eta:.0f}s")
        if eval_now:
            distributed.sync_buffers_(model)
            with step_fn.eager():
                metrics.update(evaluate(model, loader, tracker, step, is_rank0=rank == 0,
                                        final=last, probe=cfg.eval if last else None,
                                        init_std=cfg.model.init_std))
                metrics.update(suite.periodic(model, loader, cfg.eval, final=last,
                                              is_rank0=rank == 0))
            if "probe_error" in metrics:
                say(probe.describe(metrics))
            if last and "classify_error" in metrics:
                say(f"{cfg.model.method}: test error {100 * metrics['classify_error']:.1f} % "
                    f"with {cfg.data.labels} labels")
        saved = None
        if ckpt_now:
            saved = state()
            good = copy.deepcopy(saved)
            metrics["ranks_in_sync"] = float(len(set(saved["param_digests"])) == 1)
        if rank == 0:
            tracker.metrics({k: v for k, v in metrics.items()
                             if k not in ("step", "steps_total")}, step)
        report(metrics, saved)
        if out_of_time:
            if rank == 0:
                say(f"time limit of {cfg.run.time_limit} min reached at step "
                    f"{step}")
            break
    step_fn.uncompile()     # what the run hands back is a plain model
    return model


def check_condition(model, loader) -> None:
    """A conditional model needs the y its preset names (classes or attributes), and no more
    classes or attributes than it was built for: a clear error before training starts."""
    from .data.format import ATTR_EXT, CLASS_EXT
    kind, dim = model.preset.condition, model.y_dim
    train = getattr(loader, "train", None)
    label = getattr(train, "label", None)
    want = {"class": CLASS_EXT, "attributes": ATTR_EXT}[kind]
    if label != want:
        has = {CLASS_EXT: "class labels", ATTR_EXT: "binary attributes"}.get(label, "no labels")
        raise ValueError(f"--conditional on preset {model.preset.name!r} conditions on "
                         f"{'class labels' if kind == 'class' else 'binary attributes'} (.{want});"
                         f" the data {getattr(train, 'source', '')} has {has}")
    n = len(train.classes) if kind == "class" and train.classes else train.n_attributes
    if n and n > dim or (kind == "attributes" and n and n != dim):
        raise ValueError(f"the data has {n} {'classes' if kind == 'class' else 'attributes'}; "
                         f"the model was built for {dim}: pass --y-dim {n}")


MEAN_IMAGES = 500   # the authors' decoder output bias: log-odds of the mean of 500 images


def _mean_image(loader) -> torch.Tensor:
    """The per-pixel mean of the first MEAN_IMAGES training images this rank reads (rank 0's
    is broadcast to all); the loader is then put back at the start."""
    total, n = None, 0
    for x, _ in loader:
        s = x.float().sum(0)
        total, n = (s if total is None else total + s), n + len(x)
        if n >= MEAN_IMAGES:
            break
    loader.load_state_dict(loader.initial_state())
    return total / n


PROGRESS = (("loss_d", "loss_d {:.3f}"), ("loss_g", "loss_g {:.3f}"), ("d_acc", "D acc {:.2f}"),
            ("z_error", "z error {:.4f}"), ("loss", "-ELBO {:.2f}"))


def _progress(metrics: dict) -> str:
    """The training quantities a progress line shows, as far as the method reports them."""
    return " ".join(fmt.format(metrics[k]) for k, fmt in PROGRESS if k in metrics)


def _lr(opt) -> float:
    return next(iter(opt.values())).param_groups[0]["lr"]


def _divergence(m: dict, collapse_loss: float) -> str | None:
    """Why one step's metrics (numbers) mean the run has gone wrong, or None."""
    values = {k: float(v) for k, v in m.items()}
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        return ", ".join(f"{k}={v}" for k, v in values.items() if k.startswith("loss") or k in bad)
    loss_d = values.get("loss_d")
    if loss_d is not None and loss_d < collapse_loss:
        return (f"discriminator collapsed: loss_d={loss_d:.2e} < {collapse_loss:g}, the "
                f"generator's gradient vanishes")
    return None


class DivergenceWatch:
    """Divergence flags accumulated on the device: `add` (every step) queues a few tiny
    kernels and never waits; `check` (at check points: one host sync) says whether a step
    since the last check went wrong: (the first such step, why), or None. A rollback goes to
    the last checkpoint whichever step it was, so knowing it late costs only the steps run
    since, at most one logging interval."""

    def __init__(self, collapse_loss: float):
        self.collapse = collapse_loss
        self.seen = None        # any bad step since the last check (device bool)
        self.kinds: dict = {}   # metric names -> (first bad step, its values), on the device

    def add(self, m: dict, step: int) -> None:
        keys = tuple(sorted(m))
        v = torch.stack([m[k].detach().float().reshape(()) for k in keys])
        bad = ~torch.isfinite(v).all()
        if self.collapse > 0 and "loss_d" in m:
            bad = bad | (v[keys.index("loss_d")] < self.collapse)
        new = bad if self.seen is None else bad & ~self.seen
        self.seen = bad if self.seen is None else self.seen | bad
        at = torch.full((), step, dtype=torch.int64, device=v.device)
        if keys not in self.kinds:
            self.kinds[keys] = (torch.where(new, at, -1), v)
        else:
            first, vals = self.kinds[keys]
            self.kinds[keys] = (torch.where(new, at, first), torch.where(new, v, vals))

    def check(self) -> tuple[int, str] | None:
        if self.seen is None:
            return None
        kinds, self.seen, self.kinds = self.kinds, None, {}
        found = []
        for keys, (first, vals) in kinds.items():
            row = torch.cat([first.reshape(1).to(vals), vals]).tolist()
            if row[0] >= 0:
                found.append((int(row[0]), dict(zip(keys, row[1:]))))
        if not found:
            return None
        at, values = min(found, key=lambda f: f[0])
        return at, _divergence(values, self.collapse) or "diverged"
