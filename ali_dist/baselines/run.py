"""The training loop of a baseline: one process, no checkpoints (a toy baseline trains in
minutes; a failed trial restarts from scratch). It mirrors `ali_dist.loop.run`'s reporting, so
the Tune study reads every model's metrics the same way: `report(metrics, None)` every
`log_every` steps, with the evaluation's metrics every `eval_every` steps and at the end.
"""
from __future__ import annotations

import torch

from .. import schedule
from ..config import Config
from ..data import make_loader
from ..evaluate import evaluate
from ..loop import Meter, Report, total_steps
from ..models import ALI
from ..tracking import Tracker
from . import BASELINES


class Diverged(RuntimeError):
    """A baseline's loss went NaN/Inf (baselines stop; only ALI and GAN roll back)."""


def build_method(cfg: Config, device: torch.device, steps: int):
    """The baseline named by `cfg.model.variant` (see `BASELINES`) for a resolved config."""
    name = cfg.model.variant
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    o = cfg.optim
    return BASELINES[name](cfg.model.preset, cfg.model.init_std, o.lr, o.beta1, o.beta2,
                           device, steps, o.update)


def set_lr(method, step: int, o) -> None:
    """ALI's schedule (`ali_dist.schedule`) over each phase of the method on its own: a
    two-phase baseline's GAN decays exactly as ALI and GAN do over the same steps."""
    start = 0
    for _, n, optimizers in method.phases:
        if step <= start + n:
            lr = o.lr * schedule.lr_factor(step - 1 - start, n, o.lr_decay, o.lr_hold,
                                           o.lr_final)
            for opt in optimizers:
                for g in opt.param_groups:
                    g["lr"] = lr
            return
        start += n


def run(cfg: Config, device: torch.device, report: Report, tracker: Tracker | None = None) -> ALI:
    """Train the baseline `cfg.model.variant` on the preset's data; returns its model."""
    tracker = tracker or Tracker(None)
    torch.manual_seed(cfg.run.seed)
    loader = make_loader(cfg, 0, 1, device)
    method = build_method(cfg, device, total_steps(cfg, loader.batches_per_epoch))
    torch.manual_seed(cfg.run.seed * 7919 + 1)
    meter, batches, total = Meter(), iter(loader), method.total_steps
    for step in range(1, total + 1):
        set_lr(method, step, cfg.optim)
        m = method(next(batches)[0], step)
        if not all(torch.isfinite(v).all() for v in m.values()):
            values = ", ".join(f"{k}={float(v)}" for k, v in m.items())
            raise Diverged(f"{method.name} diverged at step {step} ({method.phase(step)} phase, "
                           f"lr {cfg.optim.lr}): {values}")
        if meter.sums is not None and meter.sums.keys() != m.keys():
            meter.pop()                       # a new phase logs other quantities
        meter.add(m)
        last = step == total
        log_now = step % cfg.run.log_every == 0 or last
        eval_now = step % cfg.run.eval_every == 0 or last
        if not (log_now or eval_now):
            continue
        metrics = {"step": step, "epoch": step / loader.batches_per_epoch}
        if log_now:
            metrics.update(meter.pop())
        if eval_now:
            metrics.update(evaluate(method.model, loader, tracker, step, is_rank0=True,
                                    final=last))
        tracker.metrics({k: v for k, v in metrics.items() if k != "step"}, step)
        report(metrics, None)
    return method.model
