"""Models trained on the embedded digits through the loop every Ray worker runs (no Ray: one
process, as rank 0 of 1), each trained once per test process and shared by the test files
that evaluate it (test_kplus1.py, test_evaluate.py): real training costs minutes here."""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import torch

from ali_dist import config as config_lib, loop

LABELS = 100
STEPS = {"kplus1": 600, "classifier": 600}


@functools.lru_cache(maxsize=1)
def digits_manifest() -> Path:
    from data_tools.digits import ensure_digits
    return ensure_digits(Path(tempfile.mkdtemp(prefix="ali_digits_")))


def config(method: str, steps: int) -> config_lib.Config:
    cfg = config_lib.Config()
    cfg.model.preset, cfg.model.method = "digits", method
    cfg.data.data, cfg.data.labels, cfg.optim.steps = str(digits_manifest()), LABELS, steps
    # D must not win outright (a wider init and a light R1 on its x-gradient); a smaller batch
    # at a higher rate gets further in the few minutes a test may train
    cfg.optim.r1, cfg.model.init_std = 1.0, 0.05
    cfg.optim.batch_size, cfg.optim.lr = 32, 5e-4
    cfg.run.name = f"digits-{method}"
    cfg.run.log_every = cfg.run.eval_every = cfg.run.checkpoint_every = steps
    cfg.data.loader, cfg.data.loader_threads = "webdataset", 0
    cfg = config_lib.resolve(cfg)
    cfg.eval.probe_labels = 0           # the probe runs where a test asks for it
    return cfg


@functools.lru_cache(maxsize=None)
def trained(method: str) -> tuple:
    """(model in eval mode, the final report's metrics, the saved config dict)."""
    cfg = config(method, STEPS[method])
    reports, states = [], []
    model = loop.run(cfg, torch.device("cpu"),
                     lambda m, s: (reports.append(m), s is not None and states.append(s)))
    return model.eval(), reports[-1], states[-1]["config"]
