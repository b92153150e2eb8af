"""The models the tests train for real, through the loop every Ray worker runs (no Ray: one
process, as rank 0 of 1): trained all at once, one process per core (CI's machines have two),
the first time a test asks for any of them, and shared by the test files that check them
(test_evaluate.py, test_hali_train.py, test_kplus1.py, test_toy.py). Real training costs
minutes here; side by side it costs about half.

    kplus1, classifier   digits, 100 labels, 600 steps (the K+1 pair)
    hali                 hali-digits, 3,500 steps (its preset trains 5,000) with the preset's
                         schedule: the rate falling over the second half. It passes
                         test_hali_train.py's bars at seeds 0 and 1 (seed 0, the test's, with
                         the 5,000-step run's margins; README, "HALI"); the pool's longest
                         run, so its budget sets CI's time
    conditional          digits --conditional --cycle 0, 1,500 steps (as README's figure was
                         measured: the paper's game, conditioned)
    toy                  the toy preset's recipe at 3,000 steps (its demo trains 5,000) at
                         seed 2
"""
from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import torch

from ali_dist import config as config_lib, loop
from ali_dist.models import get_preset

LABELS = 100
STEPS = {"kplus1": 600, "classifier": 600}      # the K+1 pair
HALI_STEPS = 3500                               # see the docstring
CONDITIONAL_STEPS = 1500
TOY_SEED = 2                                    # the weakest of the toy's measured seeds
TOY_STEPS = 3000                                # the preset's recipe, shorter than its demo


@functools.lru_cache(maxsize=1)
def digits_manifest() -> Path:
    from data_tools.digits import ensure_digits
    return ensure_digits(Path(tempfile.mkdtemp(prefix="ali_digits_")))


def _digits_recipe(cfg: config_lib.Config, steps: int | None) -> config_lib.Config:
    # the preset's own settings (its batch, rate, R1 on D's x-gradient and init std)
    cfg.optim.steps = steps or get_preset(cfg.model.preset).steps
    steps = cfg.optim.steps
    cfg.run.log_every = cfg.run.eval_every = cfg.run.checkpoint_every = steps
    cfg.data.loader, cfg.data.loader_threads = "webdataset", 0
    cfg = config_lib.resolve(cfg)
    cfg.eval.probe_labels = 0           # the probe runs where a test asks for it
    return cfg


def config(method: str, steps: int, manifest: str | None = None) -> config_lib.Config:
    """A K+1 pair run (`kplus1` or `classifier`)."""
    cfg = config_lib.Config()
    cfg.model.preset, cfg.model.method = "digits", method
    cfg.data.data = manifest or str(digits_manifest())
    cfg.data.labels = LABELS
    cfg.run.name = f"digits-{method}"
    return _digits_recipe(cfg, steps)


def run_config(name: str, manifest: str | None = None) -> config_lib.Config:
    """The config of one of the runs this module trains."""
    if name in STEPS:
        return config(name, STEPS[name], manifest)
    cfg = config_lib.Config()
    if name == "toy":
        cfg.model.preset, cfg.run.seed = "toy", TOY_SEED
        cfg.optim.steps = cfg.run.eval_every = TOY_STEPS
        return config_lib.resolve(cfg)
    cfg.model.preset = {"hali": "hali-digits", "conditional": "digits"}[name]
    cfg.model.conditional = name == "conditional"
    if name == "conditional":
        cfg.optim.cycle = 0.0           # the paper's conditional game (README's figure)
    cfg.data.data = manifest or str(digits_manifest())
    return _digits_recipe(cfg, HALI_STEPS if name == "hali" else CONDITIONAL_STEPS)


RUNS = ("hali", "conditional", "toy", "kplus1", "classifier")   # longest first


def _train_in_child(name: str, manifest: str, out: str) -> None:
    """One run on one core: its weights, final metrics and saved config to `out`.*"""
    torch.set_num_threads(1)            # as the toy's thresholds were measured
    reports, states = [], []
    model = loop.run(run_config(name, manifest), torch.device("cpu"),
                     lambda m, s: (reports.append(m), s is not None and states.append(s)))
    torch.save(model.state_dict(), f"{out}.pt")
    final = {k: float(v) for k, v in reports[-1].items() if isinstance(v, (int, float))}
    Path(f"{out}.json").write_text(json.dumps({"final": final,
                                               "config": states[-1]["config"]}))


def _run(job) -> str:
    _train_in_child(*job)
    return job[0]


@functools.lru_cache(maxsize=1)
def _trained_all() -> dict:
    import multiprocessing as mp
    from ali_dist.methods import build_model
    out = Path(tempfile.mkdtemp(prefix="ali_test_runs_"))
    jobs = [(name, str(digits_manifest()), str(out / name)) for name in RUNS]
    with mp.get_context("spawn").Pool(2, maxtasksperchild=1) as pool:
        done = pool.map(_run, jobs, chunksize=1)
    assert sorted(done) == sorted(RUNS)
    runs = {}
    for name in RUNS:
        saved = json.loads((out / f"{name}.json").read_text())
        m = saved["config"]["model"]
        model = build_model(m["method"], m["preset"], m["init_std"], bool(m["conditional"]),
                            m["y_dim"], m["classes"], m["d_dropout"], m["z_dim"],
                            m["encoder_noise"])
        model.load_state_dict(torch.load(out / f"{name}.pt", weights_only=True))
        runs[name] = (model.eval(), saved["final"], saved["config"])
    return runs


def trained(name: str) -> tuple:
    """(model in eval mode, the final report's metrics, the saved config dict) of a run in
    RUNS."""
    return _trained_all()[name]
