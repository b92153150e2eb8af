"""The config tree: defaults < YAML < flags, preset defaults, errors, --help."""
import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from ali_dist import config as config_lib
from ali_dist.models import get_preset
from ali_dist.train import build_parser, main


def _cfg(argv):
    return config_lib.resolve(config_lib.from_args(build_parser().parse_args(argv)))


def test_preset_supplies_the_papers_hyper_parameters():
    c = _cfg(["--preset", "celeba64", "--steps", "10"])
    assert (c.optim.lr, c.optim.beta1, c.optim.beta2, c.optim.batch_size) == (1e-4, 0.5, 0.999, 100)
    assert c.model.init_std == 0.01
    assert _cfg(["--preset", "tinyimagenet64"]).optim.batch_size == 128
    assert _cfg(["--preset", "svhn"]).optim.epochs == 100       # the paper's budget


def test_yaml_then_flags(tmp_path):
    y = tmp_path / "run.yaml"
    y.write_text("model: {preset: svhn}\noptim: {lr: 0.0003, steps: 50}\nrun: {workers: 3}\n")
    c = _cfg(["--config", str(y), "--lr", "0.001"])
    assert c.model.preset == "svhn" and c.run.workers == 3 and c.optim.steps == 50
    assert c.optim.lr == 0.001                                    # the flag wins


def test_bad_configs_are_clear_errors(tmp_path):
    y = tmp_path / "bad.yaml"
    y.write_text("optim: {learning_rate: 0.1}\n")
    with pytest.raises(ValueError, match="unknown key.*'optim': learning_rate"):
        _cfg(["--config", str(y)])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        _cfg(["--config", str(tmp_path / "nope.yaml")])
    with pytest.raises(ValueError, match="beta"):
        _cfg(["--beta1", "1.5"])
    with pytest.raises(ValueError, match="--workers must be at least 1"):
        _cfg(["--workers", "0"])
    assert main(["--config", str(y)]) == 2                        # exit code, no traceback


def test_print_config_round_trips(capsys):
    assert main(["--print-config", "--preset", "digits", "--batch-size", "32"]) == 0
    d = json.loads(capsys.readouterr().out)
    c = config_lib.Config.from_dict(d)
    assert c.model.preset == "digits" and c.optim.batch_size == 32


def test_help_explains_every_flag():
    out = subprocess.run([sys.executable, "-m", "ali_dist.train", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for section in (config_lib.ModelConfig, config_lib.DataConfig, config_lib.OptimConfig,
                    config_lib.RunConfig):
        for f in dataclasses.fields(section):
            flag = "--" + f.name.replace("_", "-")
            assert flag in out, flag
            assert f.metadata["help"].split()[0] in out
    assert "PER WORKER" in out   # the batch-size semantics are spelled out


def test_demo_budgets_carry_a_time_limit_only_when_the_user_gave_none():
    demo = _cfg([])                   # the no-argument demo (digits) runs its planned steps
    assert demo.run.time_limit is None and demo.optim.steps == 1600
    assert demo.optim.batch_size == 32 and demo.optim.lr == 1e-3   # ALI's game on digits
    assert _cfg(["--method", "kplus1"]).optim.lr == 5e-4                 # the other methods'
    assert _cfg(["--preset", "hali-digits"]).optim.lr == 5e-4            # HALI's own
    assert _cfg(["--lr", "2e-4"]).optim.lr == 2e-4                       # the user's stands
    assert _cfg(["--preset", "toy"]).run.time_limit == get_preset("toy").demo_minutes > 0
    assert _cfg(["--steps", "10"]).run.time_limit is None      # the user's budget stands
    assert _cfg(["--time-limit", "20"]).run.time_limit == 20
    assert _cfg(["--preset", "svhn"]).run.time_limit is None   # paper runs: no limit


def test_workers_are_sized_to_the_machine_unless_given(monkeypatch):
    """On a CPU-only machine: one worker on every core; given workers share the cores; a
    cluster (RAY_ADDRESS) gets one CPU per worker; explicit values stand."""
    import os
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cores = os.cpu_count() or 1
    gpus = torch.cuda.device_count()
    c = _cfg([]).run
    assert c.workers == max(1, gpus)
    assert c.cpus_per_worker == (1 if gpus else cores)
    c = _cfg(["--workers", "2"]).run
    assert c.workers == 2 and c.cpus_per_worker == (1 if gpus else max(1, cores // 2))
    c = _cfg(["--workers", "3", "--cpus-per-worker", "0.5"]).run
    assert (c.workers, c.cpus_per_worker) == (3, 0.5)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    c = _cfg([]).run
    assert (c.workers, c.cpus_per_worker) == (1, 1)
    with pytest.raises(ValueError, match="--cpus-per-worker must be positive"):
        _cfg(["--cpus-per-worker", "0"])


def test_toy_preset_trains_the_recipe_and_pacgans_settings_are_a_config():
    """The toy's defaults are the recipe search's best (tune/results/toy_recipe_laptop/
    best_recipe.yaml, rounded) with the noise encoder and the cycle term while the rate is
    held (ALI's game only); jobs/toy_pacgan.yaml is PacGAN's (the paper's game)."""
    from pathlib import Path
    toy = _cfg(["--preset", "toy"])
    o, m = toy.optim, toy.model
    assert (o.lr, o.beta1, o.batch_size, o.update, o.d_steps) == (2.8e-4, 0.64, 200,
                                                                  "alternating", 2)
    assert (o.lr_decay, o.lr_hold, o.lr_final, o.steps) == ("linear", 0.31, 0.077, 5000)
    assert (m.init_std, m.bn_momentum, m.encoder_noise) == (0.010, 0.042, 2)
    assert (o.cycle, o.cycle_until) == (10.0, 0.31)               # ALI's game, while held
    assert _cfg(["--preset", "toy", "--method", "gan"]).optim.cycle == 0.0
    assert _cfg(["--preset", "toy", "--update", "simultaneous"]).optim.d_steps == 1
    pacgan = _cfg(["--config", str(Path(__file__).parent.parent / "jobs" / "toy_pacgan.yaml")])
    o, m = pacgan.optim, pacgan.model
    assert (o.lr, o.beta1, o.batch_size, o.update, o.d_steps, o.lr_decay) == (
        1e-4, 0.8, 100, "simultaneous", 1, "none")
    assert (o.epochs, o.steps, m.init_std, m.bn_momentum, m.encoder_noise, o.cycle) == (
        400, None, 0.02, 0.05, 2, 0.0)
