"""The loop never waits for the device between check points (logging, evaluation, checkpoint
steps): the step's metrics and the divergence flags stay on the device. On CPU the waits are
counted where the package asks for a tensor's value (`.item()`, `float(t)`, `bool(t)`, ...);
on CUDA, torch's sync debug mode turns any synchronisation inside the step into an error."""
from __future__ import annotations

import sys

import pytest
import torch

from ali_dist import config as config_lib, loop, methods
from ali_dist.methods import Batch
from ali_dist.step import TrainStep, make_optimizers

# What makes the host wait for a device tensor's value, from Python.
READS = ("item", "__float__", "__int__", "__bool__", "__index__", "tolist", "numpy", "cpu")


def _counting(orig, counter):
    def read(self, *args, **kwargs):
        # only the package's own reads: torch's optimisers read CPU-resident step counters
        if sys._getframe(1).f_globals.get("__name__", "").startswith("ali_dist"):
            counter[0] += 1
        return orig(self, *args, **kwargs)
    return read


@pytest.mark.parametrize("method", ["ali", "vae"])
def test_the_loop_reads_device_values_only_at_check_points(monkeypatch, method):
    counter, at_step = [0], []
    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, _counting(getattr(torch.Tensor, name), counter))
    call = TrainStep.__call__

    def step_and_count(self, batch, stage, step):
        at_step.append(counter[0])
        return call(self, batch, stage, step)
    monkeypatch.setattr(TrainStep, "__call__", step_and_count)

    cfg = config_lib.Config()
    cfg.model.preset, cfg.model.method = "toy", method
    cfg.optim.steps, cfg.optim.batch_size = 21, 32
    cfg.run.log_every, cfg.run.eval_every, cfg.run.checkpoint_every = 5, 10_000, 10
    cfg.run.time_limit = 60.0                     # checked, but only at check points
    reports = []
    loop.run(config_lib.resolve(cfg), torch.device("cpu"), lambda m, s: reports.append(m))
    at_step.append(counter[0])
    reads = [b - a for a, b in zip(at_step, at_step[1:])]   # reads[i]: in the loop's step i+1
    assert len(reads) == 21
    checks = {5, 10, 15, 20, 21}                  # log, checkpoint and the last step
    for i, n in enumerate(reads, start=1):
        if i in checks:
            assert n > 0, f"step {i}: a check point reads the metrics (the count works)"
        else:
            assert n == 0, f"step {i} read {n} device value(s) between check points"
    assert [r["step"] for r in reports] == [5, 10, 15, 20, 21]


def test_divergence_found_late_is_dated_to_the_first_bad_step():
    watch = loop.DivergenceWatch(collapse_loss=1e-4)
    ok = {"loss_d": torch.tensor(1.3), "loss_g": torch.tensor(0.8)}
    watch.add(ok, 1)
    watch.add({"loss_d": torch.tensor(float("nan")), "loss_g": torch.tensor(0.8)}, 2)
    watch.add({"loss_d": torch.tensor(1e-6), "loss_g": torch.tensor(15.0)}, 3)
    watch.add({**ok, "r1": torch.tensor(float("inf"))}, 4)   # other metrics, later
    step, why = watch.check()
    assert step == 2 and "loss_d=nan" in why
    assert watch.check() is None                  # a check starts a new interval
    watch.add({"loss_d": torch.tensor(1e-6), "loss_g": torch.tensor(15.0)}, 7)
    step, why = watch.check()
    assert step == 7 and "collapsed" in why
    off = loop.DivergenceWatch(collapse_loss=0.0)  # the collapse check can be switched off
    off.add({"loss_d": torch.tensor(1e-6)}, 1)
    assert off.check() is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("compile", ["off", "on", "all"])
@pytest.mark.parametrize("update", ["simultaneous", "alternating"])
def test_the_step_never_synchronises_on_cuda(update, compile):
    dev = torch.device("cuda")
    cfg = config_lib.Config()
    cfg.model.preset, cfg.optim.update = "svhn", update
    cfg = config_lib.resolve(cfg)
    torch.manual_seed(0)
    m = methods.build(cfg).to(dev)
    step = TrainStep(m, make_optimizers(m, 1e-4, 0.5, 0.999), dev, "bf16",
                     channels_last=True, compile=compile)
    stage, x = m.stages(10)[0], torch.rand(32, 3, 32, 32, device=dev)
    watch, meter = loop.DivergenceWatch(1e-4), loop.Meter()
    for i in range(3):                            # compile, autotune, allocate
        step(Batch(x), stage, i)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(3, 8):
            out = step(Batch(x), stage, i)
            watch.add(out, i + 1)
            meter.add(out)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert watch.check() is None and all(v == v for v in meter.pop().values())
