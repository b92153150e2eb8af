"""The learning-rate schedule: its shape, the config that selects it, and the training loop
applying it (with rollbacks lowering it further)."""
from __future__ import annotations

import pytest
import torch

from ali_dist import config as config_lib, loop
from ali_dist.schedule import lr_factor


@pytest.mark.parametrize("decay", ["cosine", "linear"])
def test_decay_holds_then_falls_monotonically_to_the_final_share(decay):
    total = 1000
    f = [lr_factor(s, total, decay, hold=0.4, final=0.05) for s in range(total)]
    assert f[:400] == [1.0] * 400                     # the hold: the full rate
    assert f[-1] == pytest.approx(0.05)               # the last update runs at the final rate
    assert all(a >= b for a, b in zip(f, f[1:])) and f[401] < 1.0
    mid = f[400 + (total - 1 - 400) // 2]
    assert mid == pytest.approx(0.525, abs=0.01)      # half way down, for both shapes


def test_no_decay_is_the_papers_constant_rate():
    assert {lr_factor(s, 50, "none", 0.0, 0.01) for s in range(50)} == {1.0}


def _cfg(**optim) -> config_lib.Config:
    cfg = config_lib.Config()
    cfg.model.preset = "toy"
    for k, v in optim.items():
        setattr(cfg.optim, k, v)
    return cfg


@pytest.mark.parametrize("field,value,flag", [
    ("lr_decay", "exp", "--lr-decay"), ("lr_hold", 1.5, "--lr-hold"),
    ("lr_final", 0.0, "--lr-final")])
def test_a_schedule_that_cannot_be_meant_names_its_flag(field, value, flag):
    with pytest.raises(ValueError, match=flag):
        config_lib.resolve(_cfg(**{field: value}))


def test_unset_schedule_and_update_take_the_presets_values_and_flags_override():
    from ali_dist.models import get_preset
    from ali_dist.train import build_parser
    p = get_preset(config_lib.Config().model.preset)
    o = config_lib.resolve(config_lib.Config()).optim           # the default preset
    assert (o.update, o.lr_decay, o.lr_hold, o.lr_final) == \
        (p.update, p.lr_decay, p.lr_hold, p.lr_final)
    args = build_parser().parse_args(["--lr-decay", "linear", "--lr-hold", "0.3",
                                      "--update", "alternating"])
    o = config_lib.resolve(config_lib.from_args(args)).optim
    assert (o.lr_decay, o.lr_hold, o.update) == ("linear", 0.3, "alternating")


def test_the_loop_trains_on_the_schedule_and_a_rollback_lowers_it_further():
    reports = []
    cfg = config_lib.resolve(_cfg(steps=40, lr=1e-3, lr_decay="linear", lr_hold=0.5,
                                  lr_final=0.1))
    cfg.run.log_every, cfg.run.eval_every, cfg.run.checkpoint_every = 10, 10_000, 20
    loop.run(cfg, torch.device("cpu"), lambda m, s: reports.append(m))
    lrs = {r["step"]: r["lr"] for r in reports}
    assert lrs[10] == lrs[20] == pytest.approx(1e-3)
    assert lrs[30] == pytest.approx(1e-3 * lr_factor(29, 40, "linear", 0.5, 0.1))
    assert lrs[40] == pytest.approx(1e-4)

    # lr 10 diverges within steps (the recipe's init of 0.01 outlasts lr 1.0 for 60 steps
    # at some thread counts); each rollback scales the scheduled rate by 0.01
    LR = 10.0
    reports.clear()
    cfg = config_lib.resolve(_cfg(steps=60, lr=LR, lr_decay="cosine", lr_hold=0.0,
                                  lr_final=0.5))
    cfg.run.log_every, cfg.run.eval_every, cfg.run.checkpoint_every = 10, 10_000, 30
    cfg.run.rollback_lr_factor = 0.01
    loop.run(cfg, torch.device("cpu"), lambda m, s: reports.append(m))
    final = reports[-1]
    assert final["step"] == 60 and final["rollbacks"] >= 1 and "diverged" not in final
    assert final["lr"] == pytest.approx(LR * 0.5 * 0.01 ** final["rollbacks"])
