"""Ray Tune studies (`tune/`) and the Figure 8 baselines (`ali_dist/methods/`).

Fast: budgets, the search space, the study table, the CLI's errors, and each baseline learning
something measurable. End to end, with a real local Ray and a real SQLite MLflow store: a small
toy study (table, Figure 8, parent and child runs), and an ASHA search through TorchTrainer
whose driver is killed mid-trial and resumed with Tuner.restore.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ali_dist import config as config_lib, loop, methods
from ali_dist.data import toy
from ali_dist.evaluate import reconstruction_error
from ali_dist.models import get_preset

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def one_thread():
    """Train on one thread: on 2 busy cores torch's multi-threaded kernels spin-wait for a
    core and a 5 s test takes minutes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def mlflow_store(ali_home, tmp_path, monkeypatch):
    """A real MLflow store: SQLite at an absolute tmp path, as on a laptop."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def _client(uri):
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=uri)


# ---------------------------------------------------------------- budgets, space, table --

def test_budgets_override_and_reject_nonsense():
    from tune.space import BUDGETS, get_budget
    assert set(BUDGETS["toy"]) == set(BUDGETS["image"]) >= {"ci", "laptop", "paper"}
    paper = get_budget("toy", "paper")
    assert paper.trials == 10 and paper.epochs == 400        # 10 settings, PacGAN's epochs
    b = paper.with_overrides(trials=2, steps=50, eval_every=1000)
    assert (b.trials, b.steps, b.epochs, b.eval_every) == (2, 50, None, 50)
    with pytest.raises(ValueError, match="--trials"):
        get_budget("toy", "ci").with_overrides(trials=0)
    with pytest.raises(ValueError, match="unknown budget"):
        get_budget("toy", "huge")


def test_settings_are_paired_reproducible_and_follow_the_preset():
    from ali_dist.models import get_preset
    from tune.space import draw_settings, image_space, toy_space
    space = toy_space("toy")
    p = get_preset("toy")
    assert space["lr"].lower == pytest.approx(p.lr / 10) and space["lr"].upper == \
        pytest.approx(p.lr * 10)
    assert set(image_space("digits")) == {"lr", "beta1"}
    a, b = draw_settings(space, 20, seed=3), draw_settings(space, 20, seed=3)
    assert a == b and draw_settings(space, 20, seed=4) != a
    for s in a:
        assert space["lr"].lower <= s["lr"] <= space["lr"].upper
        assert 0.1 <= s["beta1"] <= 0.9
        assert space["init_std"].lower <= s["init_std"] <= space["init_std"].upper
    assert [s["index"] for s in a] == list(range(20))
    # log-uniform: about half the draws below the geometric midpoint
    below = sum(s["lr"] < p.lr for s in draw_settings(space, 400, seed=0))
    assert 150 < below < 250


def test_table_statistics_pairing_and_best_configuration():
    from tune import report
    rows = []
    for i, (ali, gan) in enumerate([(25, 20), (22, 22), (24, 10)]):
        s = {"lr": 1e-3, "beta1": 0.5, "init_std": 0.1, "seed": i, "index": i}
        rows.append({"trial_id": f"a{i}", "model": "ali", "setting": s, "ok": True,
                     "modes_paper": 25, "modes_strict": ali, "high_quality": ali / 100,
                     "reverse_kl": 0.1, "recon_ratio": 0.05})
        rows.append({"trial_id": f"g{i}", "model": "gan", "setting": s, "ok": True,
                     "modes_paper": 25, "modes_strict": gan, "high_quality": 0.5,
                     "reverse_kl": 0.3})
    rows.append({"trial_id": "g9", "model": "gan", "setting": {"index": 9}, "ok": False})
    summary = report.summarize(rows, ["ali", "gan"])
    assert summary["ali"]["modes_strict"]["mean"] == pytest.approx(71 / 3)
    assert (summary["ali"]["modes_strict"]["min"], summary["ali"]["modes_strict"]["max"]) == (22, 25)
    assert summary["gan"]["failed"] == 1 and summary["gan"]["trials"] == 4
    assert summary["ali"]["best"]["trial_id"] == "a0"
    assert "recon_ratio" not in summary["gan"]["best"]
    pairs = report.paired(rows)
    assert pairs["settings"] == 3
    assert (pairs["modes_strict"]["ahead"], pairs["modes_strict"]["tied"],
            pairs["modes_strict"]["behind"]) == (2, 1, 0)
    md = report.markdown(summary, "test budget")
    assert "| ali | 3/3 | 25.0 ± 0.0 (25–25) | 23.7 ± 1.5 (22–25) |" in md
    assert "13.4 ± 5.8 (8–25)" in md                                   # the paper beside us
    base = config_lib.Config().to_dict()
    base["optim"].update(steps=300, batch_size=100)
    best = report.best_configuration(summary, base, "toy")
    assert best["command"].startswith("python -m ali_dist.train --preset toy --lr 0.001 ")
    assert "--steps 300" in best["command"] and "--init-std 0.1" in best["command"]
    toy = get_preset("toy")                         # the schedule the trials trained on
    assert f"--update {toy.update}" in best["command"]
    assert ("--lr-decay" in best["command"]) == (toy.lr_decay != "none")
    assert f"--cycle {toy.cycle:g} --cycle-until {toy.cycle_until:g} " in best["command"]
    base["optim"].update(lr_decay="linear", lr_hold=0.2)
    assert "--lr-decay linear --lr-hold 0.2 --lr-final" in \
        report.best_configuration(summary, base, "toy")["command"]
    metrics = report.flat_metrics(summary)
    assert metrics["ali.modes_strict_max"] == 25 and metrics["gan.failed_trials"] == 1


def test_a_recipe_setting_reaches_the_config_the_model_and_the_command(tmp_path):
    """Every field the recipe search draws lands in the trial's config and network (batch
    norm's momentum in every BN layer, the D steps of an alternating scheme), and the command
    printed for the best recipe trains that same config."""
    from ali_dist import train
    from tune.recipe import command, recipe_yaml
    from tune.trials import trial_config
    setting = {"lr": 3e-4, "beta1": 0.7, "init_std": 0.02, "batch_size": 50,
               "scheme": {"update": "alternating", "d_steps": 2}, "bn_momentum": 0.3,
               "lr_decay": "linear", "lr_hold": 0.2, "lr_final": 0.05, "seed": 7, "index": 0}
    base = config_lib.Config()
    base.model.preset, base.optim.steps = "toy", 500
    cfg = trial_config({"base": base.to_dict(), "setting": setting})
    o = cfg.optim
    assert (o.lr, o.beta1, o.batch_size, o.update, o.d_steps) == (3e-4, 0.7, 50, "alternating", 2)
    assert (o.lr_decay, o.lr_hold, o.lr_final) == ("linear", 0.2, 0.05)
    assert (cfg.model.init_std, cfg.model.bn_momentum, cfg.run.seed) == (0.02, 0.3, 7)
    method = methods.build(cfg)
    bns = [m for m in method.model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(bns) == 6 and {m.momentum for m in bns} == {0.3}       # 2 encoder + 4 decoder
    assert [p.name for p in method.stages(500)[0].phases] == ["d", "d", "g"]
    plain = config_lib.Config()
    plain.model.preset = "toy"
    assert {m.momentum for m in methods.build(config_lib.resolve(plain)).model.modules()
            if isinstance(m, torch.nn.BatchNorm1d)} == {get_preset("toy").bn_momentum}

    again = config_lib.resolve(config_lib.from_args(train.build_parser().parse_args(
        command(setting, "toy", 500).split()[3:] + ["--seed", "7"])))
    assert again.optim == cfg.optim and again.model == cfg.model
    (tmp_path / "recipe.yaml").write_text(recipe_yaml(setting, "toy", 500))
    from_yaml = config_lib.resolve(config_lib.from_args(train.build_parser().parse_args(
        ["--config", str(tmp_path / "recipe.yaml"), "--seed", "7"])))
    assert from_yaml.optim == cfg.optim and from_yaml.model == cfg.model
    with pytest.raises(ValueError, match="--bn-momentum"):
        config_lib.resolve(config_lib.from_args(train.build_parser().parse_args(
            ["--bn-momentum", "0"])))


def test_recipe_score_targets_and_ranking():
    """The score needs both coverage and quality; the targets are PacGAN's ALI numbers plus
    reconstructions on the input's own mode; finished trials rank above ones ASHA stopped."""
    from tune import report
    from tune.recipe import ranked, seed_summary
    collapsed = {"modes_strict": 1, "high_quality": 1.0}
    spread = {"modes_strict": 25, "high_quality": 0.04}
    good = {"modes_strict": 24, "high_quality": 0.9}
    assert report.recipe_score(collapsed) == 0.04 and report.recipe_score(spread) == 0.04
    assert report.recipe_score(good) == pytest.approx(0.864)
    at_target = {"modes_strict": 24, "high_quality": 0.95, "reverse_kl": 0.15, "recon_ratio": 0.1}
    assert report.meets_targets(at_target)
    for k, v in (("modes_strict", 23.9), ("high_quality", 0.94), ("reverse_kl", 0.16),
                 ("recon_ratio", 0.11)):
        assert not report.meets_targets({**at_target, k: v}), k
    assert not report.meets_targets({"modes_strict": 25, "high_quality": 1.0})  # no recon

    def row(tid, step, ok=True, **m):
        return {"trial_id": tid, "step": step, "ok": ok, "setting": {}, "error": None, **m}
    rows = ranked([row("stopped", 100, **good), row("failed", 50, ok=False),
                   row("weak", 300, **spread), row("best", 300, **good)], steps=300)
    assert [r["trial_id"] for r in rows] == ["best", "weak", "stopped", "failed"]
    assert rows[2]["stopped_early"] and rows[0]["recipe_score"] == pytest.approx(0.864)
    s = seed_summary([row("a", 300, **at_target), row("b", 300, **{**at_target,
                                                                   "modes_strict": 25})])
    assert s["modes_strict"]["mean"] == 24.5 and s["meets_targets"]
    assert not seed_summary([row("a", 300, **{**at_target, "reverse_kl": 0.5})])["meets_targets"]


def test_cli_help_and_clear_errors(ali_home, capsys):
    from tune import search
    with pytest.raises(SystemExit) as e:
        search.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--budget", "--trials", "--steps", "--models", "--resume", "--concurrency",
                 "--runner", "--grace-steps", "laptop", "paper", "--recipe", "--seeds"):
        assert flag in out
    assert search.main(["--recipe", "--preset", "digits"]) == 2
    assert "--recipe searches the toy" in capsys.readouterr().err
    assert search.main(["--recipe", "--seeds", "-1"]) == 2
    assert "--seeds must be 0 or more" in capsys.readouterr().err
    assert search.main(["--recipe", "--budget", "paper", "--storage", str(ali_home)]) == 2
    assert "unknown budget 'paper'; choose one of ci, laptop, long" in capsys.readouterr().err
    assert search.main(["--models", "ali,bigan", "--budget", "ci"]) == 2
    assert "unknown bigan" in capsys.readouterr().err
    assert search.main(["--preset", "digits", "--method", "gan", "--budget", "ci"]) == 2
    assert "no reconstruction ratio" in capsys.readouterr().err     # nothing to rank a GAN by
    with pytest.raises(SystemExit, match="no study named 'nope'"):
        search.main(["--budget", "ci", "--name", "nope", "--resume"])



def test_trials_tune_stopped_close_as_finished_and_the_rest_as_killed(mlflow_store):
    """ASHA's stopped trials count as finished, even where the trial marked its own run FAILED
    on the way out; a trial the driver lost (still RUNNING) counts as killed; a real failure
    stays FAILED."""
    from ali_dist import tracking
    from tune import record
    study = record.start_parent("close", "close-test", {}, {})
    runs = {t: record.child_run(study.as_dict(), t, t, {}, {}) for t in
            ("stopped", "stopped_failed", "completed", "lost", "failed")}
    for t in ("stopped_failed", "failed"):
        tracking.end_run(runs[t], "FAILED")
    record.close_children(study, {"completed"}, {"stopped", "stopped_failed"})
    client = _client(mlflow_store)
    got = {t: client.get_run(r.run_id) for t, r in runs.items()}
    assert {t: r.info.status for t, r in got.items()} == {
        "stopped": "FINISHED", "stopped_failed": "FINISHED", "completed": "FINISHED",
        "lost": "KILLED", "failed": "FAILED"}
    assert got["stopped_failed"].data.tags["stopped_early"] == "true"
    assert "stopped_early" not in got["completed"].data.tags

# ---------------------------------------------------------------------------- baselines --

def _batches(n: int, batch: int = 100, seed: int = 0):
    data = toy.dataset(20_000, seed)
    it = iter(toy.ToyLoader(data, batch, seed=seed))
    return [next(it)[0] for _ in range(n)]


def _method(name: str, init_std: float | None = None, **optim):
    """A baseline and the one step, for the toy preset (its recipe: lr, betas, updates)."""
    from ali_dist.step import TrainStep, make_optimizers
    cfg = config_lib.Config()
    cfg.model.preset, cfg.model.method, cfg.model.init_std = "toy", name, init_std
    for k, v in optim.items():
        setattr(cfg.optim, k, v)
    cfg = config_lib.resolve(cfg)
    torch.manual_seed(0)
    m = methods.build(cfg)
    o = cfg.optim
    return m, TrainStep(m, make_optimizers(m, o.lr, o.beta1, o.beta2), torch.device("cpu"),
                        "fp32")


def _run_stage(method, step_fn, stage, batches, start: int = 0) -> list[dict]:
    method.begin_stage(stage)
    return [step_fn(methods.Batch(x), stage, start + i) for i, x in enumerate(batches)]


def test_baselines_are_registered_with_alis_encoder_and_decoder():
    """Figure 8's baselines train ALI's networks; the VAE's encoder is the Gaussian form of
    the same table (its bound needs q's density): no noise beside x, (mu, log sigma) out."""
    ali = methods.build_model("ali", "toy")
    shapes = lambda m: [tuple(p.shape) for p in m.parameters()]
    assert ali.encoder.noise == 2 and shapes(ali.encoder)[0] == (400, 4)   # x and 2-D noise
    for name in methods.BASELINES:
        m = methods.build_model(name, "toy")
        assert m.name == name
        assert shapes(m.decoder) == shapes(ali.decoder)
        if name != "vae":
            assert shapes(m.encoder) == shapes(ali.encoder)
            continue
        vae, same = shapes(m.encoder), shapes(ali.encoder)
        assert m.encoder.noise == 0 and vae[1:-2] == same[1:-2]           # the hidden rows
        assert (vae[0], vae[-2], same[-2]) == ((400, 2), (4, 400), (2, 400))


def test_inverse_mapping_encoder_error_falls():
    # init 0.1: from the recipe's 0.01, 30 Adam steps at its lr move the encoder by ~0.008,
    # and how far its error falls then hangs on the thread count (0.42-0.60 of the first)
    method, step_fn = _method("gan_inverse", init_std=0.1)
    gan, enc = method.stages(60)
    assert (gan.name, gan.steps, enc.name, enc.steps) == ("gan", 60, "encoder", 30)
    batches = _batches(90)
    _run_stage(method, step_fn, gan, batches[:60])
    dec_before = [p.clone() for p in method.model.decoder.parameters()]
    errors = [float(m["z_error"]) for m in _run_stage(method, step_fn, enc, batches[60:], 60)]
    first, last = sum(errors[:5]) / 5, sum(errors[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    # the decoder stays as the GAN left it
    assert all(torch.equal(a, b) for a, b in zip(dec_before, method.model.decoder.parameters()))


def test_posthoc_inference_trains_only_the_encoder_and_learns_to_invert():
    """The ALI game against a fresh D(x, z) teaches the encoder to invert the frozen decoder:
    the latent error ||z - E(G(z))||^2 falls."""
    method, step_fn = _method("gan_posthoc")
    model = method.model
    gan, enc = method.stages(400)
    assert (gan.steps, enc.steps) == (400, 200)
    z = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1))

    def z_error() -> float:
        model.eval()
        with torch.no_grad():
            e = (model.encoder(model.decoder(z), sample=False) - z).pow(2).sum(1).mean()
        return float(e)

    batches = _batches(600)
    _run_stage(method, step_fn, gan, batches[:400])
    dec = [p.clone() for p in model.decoder.parameters()]
    before = z_error()
    out = _run_stage(method, step_fn, enc, batches[400:], 400)
    assert all(torch.isfinite(m["loss_d"]) for m in out)
    after = z_error()
    assert all(torch.equal(a, b) for a, b in zip(dec, model.decoder.parameters()))
    assert after < 0.7 * before, (before, after)
    held_out = toy.sample(100, torch.Generator().manual_seed(9))
    assert model.reconstruct(held_out).shape == held_out.shape


def test_vae_reconstruction_beats_the_random_pair_baseline():
    method, step_fn = _method("vae")
    assert method.model.discriminator is None
    (stage,) = method.stages(300)
    losses = [float(m["loss"]) for m in _run_stage(method, step_fn, stage, _batches(300))]
    assert sum(losses[-20:]) < sum(losses[:20])
    held_out = toy.sample(2000, torch.Generator().manual_seed(5))
    r = reconstruction_error(method.model, held_out)
    assert r["recon_ratio"] < 0.05, r          # a random pairing sits at 1


def test_baselines_train_through_the_one_loop_stage_by_stage(ali_home):
    """A two-stage baseline through `loop.run`: reports like any run (40 GAN steps, then 20
    encoder steps), and each stage runs the learning-rate schedule over its own span."""
    cfg = config_lib.Config()
    cfg.model.preset, cfg.model.method, cfg.optim.steps = "toy", "gan_inverse", 40
    cfg.optim.lr, cfg.optim.lr_decay, cfg.optim.lr_hold, cfg.optim.lr_final = \
        1e-3, "linear", 0.0, 0.1
    cfg.run.log_every, cfg.run.eval_every, cfg.run.checkpoint_every = 10, 20, 30
    cfg = config_lib.resolve(cfg)
    reports = []
    loop.run(cfg, torch.device("cpu"), lambda m, s: reports.append((m, s)))
    steps = [m["step"] for m, _ in reports]
    assert steps == [10, 20, 30, 40, 50, 60]
    assert "loss_d" in reports[0][0] and "z_error" in reports[-1][0]
    assert {"modes_paper", "modes_strict", "high_quality", "reverse_kl",
            "recon_ratio"} <= set(reports[-1][0])
    from ali_dist.schedule import lr_factor
    lr = {m["step"]: m["lr"] for m, _ in reports}
    factor = lambda at, n: 1e-3 * lr_factor(at, n, "linear", 0.0, 0.1)
    assert lr[40] == pytest.approx(factor(39, 40)) == pytest.approx(1e-4)  # the GAN's last
    assert lr[50] == pytest.approx(factor(9, 20)) and lr[50] > 2e-4         # anew
    assert lr[60] == pytest.approx(1e-4)
    assert any(s is not None for _, s in reports)                    # checkpoints, too
    cfg.model.method = "bigan"
    with pytest.raises(ValueError, match="unknown method"):
        config_lib.resolve(cfg)


# ------------------------------------------------------------------------- end to end --

@pytest.mark.slow
def test_toy_study_end_to_end(mlflow_store, ray_cluster, tmp_path, capsys):
    """Every model of the study, one paired setting, a few steps: the table, Figure 8 and the
    best configuration land in files and in MLflow (parent run + one child per trial)."""
    from tune.study import MODELS
    from tune.search import main
    out = tmp_path / "out"
    rc = main(["--budget", "ci", "--trials", "1", "--steps", "30", "--eval-every", "15",
               "--storage", str(tmp_path / "runs"), "--name", "toy-e2e", "--out", str(out),
               "--concurrency", "2", "--cycle", "3"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "modes, strict count" in printed and "best ALI configuration" in printed

    table = json.loads((out / "study_table.json").read_text())
    assert list(table["models"]) == list(MODELS)
    for model, entry in table["models"].items():
        assert entry["trials"] == 1 and entry["failed"] == 0, (model, entry)
        assert 1 <= entry["modes_paper"]["mean"] <= 25
        assert 0 <= entry["modes_strict"]["mean"] <= 25
        assert 0 <= entry["high_quality"]["mean"] <= 1
        assert ("recon_ratio" in entry) == (model != "gan")   # every other model encodes
    assert table["ali_vs_gan"]["settings"] == 1
    md = (out / "study_table.md").read_text()
    assert "| gan_posthoc | 1/1 |" in md and "ALI with the cycle term at 3 for the first 31 %" in md
    best = json.loads((out / "best_config.json").read_text())
    assert best["model"] == "ali" and "--steps 30" in best["command"]
    assert "--cycle 3 --cycle-until 0.31 " in best["command"]
    assert (out / "figure8.png").stat().st_size > 10_000

    client = _client(mlflow_store)
    exp = client.get_experiment_by_name("ali-dist-tune")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.info.run_name == "toy-e2e"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["model"] for r in children) == sorted(MODELS)
    for c in children:
        assert c.info.status == "FINISHED"
        assert {"modes_paper", "modes_strict", "high_quality", "reverse_kl"} <= set(c.data.metrics)
        assert float(c.data.params["optim.lr"]) == pytest.approx(best["setting"]["lr"])
        # --cycle is ALI's game's term: its trial trains with it, every other model without
        want = 3.0 if c.data.tags["model"] == "ali" else 0.0
        assert float(c.data.params["optim.cycle"]) == want, c.data.tags["model"]
        assert [a.path for a in client.list_artifacts(c.info.run_id)] == ["toy_panels.png"]
    arts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"study_table.md", "study_table.json", "trials.json", "best_config.json",
            "figure8.png", "figure8"} <= arts
    assert len(client.list_artifacts(parent.info.run_id, "figure8")) == len(MODELS)
    assert parent.data.metrics["ali.modes_strict_mean"] == table["models"]["ali"][
        "modes_strict"]["mean"]
    assert float(parent.data.params["best.lr"]) == pytest.approx(best["setting"]["lr"])


@pytest.mark.slow
def test_recipe_search_end_to_end(mlflow_store, ray_cluster, tmp_path, capsys):
    """`--recipe`: ASHA over the recipe space (in-process ALI trials); then, resumed, the
    best recipe at fresh seeds: the table and the best recipe in files and in MLflow, every
    trial a child run that trained its own draw."""
    from tune.search import main
    out = tmp_path / "out"
    args = ["--recipe", "--budget", "ci", "--trials", "2", "--steps", "40", "--eval-every",
            "20", "--grace-steps", "20", "--storage", str(tmp_path / "runs"), "--name", "recipe-e2e", "--out", str(out),
            "--concurrency", "2"]
    assert main(args + ["--seeds", "0"]) == 0            # the search alone
    assert "best recipe: python -m ali_dist.train --preset toy" in capsys.readouterr().out
    assert "not trained at fresh seeds yet" in (out / "recipe_table.md").read_text()
    searched = json.loads((out / "trials.json").read_text())
    assert main(args + ["--resume", "--seeds", "2"]) == 0   # its trials kept, seeds trained
    rows = json.loads((out / "trials.json").read_text())
    seeds = json.loads((out / "seeds.json").read_text())
    best = json.loads((out / "best_recipe.json").read_text())
    assert len(rows) == 2 and len(seeds) == 2 and all(r["ok"] for r in rows + seeds), rows
    assert rows == searched                                  # not trained again
    finished = [r for r in rows if not r["stopped_early"]]
    assert finished and all(r["step"] == 40 for r in finished)
    assert best["search_trial"] == max(finished, key=lambda r: r["recipe_score"])["trial_id"]
    assert [r["setting"]["seed"] for r in seeds] == [1000, 1001]
    for r in seeds:
        assert {k: v for k, v in r["setting"].items() if k not in ("seed", "index")} == \
            {k: v for k, v in best["setting"].items() if k not in ("seed", "index")}
    over = best["over_seeds"]
    assert over["finished"] == 2 and over["modes_strict"]["mean"] == pytest.approx(
        sum(r["modes_strict"] for r in seeds) / 2)
    assert "--steps 40" in best["command"] and "--bn-momentum" in best["command"]
    assert "Mean over seeds: strict modes" in (out / "recipe_table.md").read_text()

    client = _client(mlflow_store)
    runs = client.search_runs([client.get_experiment_by_name("ali-dist-tune").experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.info.status == "FINISHED" and parent.data.tags["kind"] == "recipe_search"
    assert parent.data.metrics["seeds.modes_strict_mean"] == over["modes_strict"]["mean"]
    assert {"recipe_table.md", "best_recipe.json", "best_recipe.yaml", "trials.json",
            "seeds.json"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id)}
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    trained = sorted((int(c.data.params["optim.batch_size"]),
                      round(float(c.data.params["model.bn_momentum"]), 6)) for c in children)
    assert trained == sorted((r["setting"]["batch_size"], round(r["setting"]["bn_momentum"], 6))
                             for r in rows + seeds)


def _wait_for(predicate, timeout: float, what: str, proc=None):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"the driver exited ({proc.returncode}) before {what}:\n"
                                 f"{out[-3000:]}")
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.slow
def test_search_through_torchtrainer_resumes_after_the_driver_dies(mlflow_store, ray_cluster,
                                                                 tmp_path):
    """The image-search path (a TorchTrainer per trial, ASHA on recon_ratio) on conditional
    HALI over the embedded digits (`--preset hali-digits` with a `--config` that makes it
    conditional; ASHA ranks by z2's reconstruction ratio): its driver is killed once the trial
    has a checkpoint; `--resume` restores the Tuner and the trial continues from that
    checkpoint in the same MLflow child run."""
    from tune import search
    storage, name = tmp_path / "runs", "search-resume"
    base = tmp_path / "conditional.yaml"
    base.write_text("model:\n  conditional: true\neval:\n  probe_labels: 0\n")
    args = ["--preset", "hali-digits", "--config", str(base), "--batch-size", "8",
            "--runner", "torch", "--budget", "ci", "--trials", "1",
            "--steps", "40", "--eval-every", "10", "--storage", str(storage), "--name", name,
            "--concurrency", "1", "--out", str(tmp_path / "out")]
    env = {**os.environ, "RAY_ADDRESS": ray_cluster.get_runtime_context().gcs_address,
           "PYTHONPATH": str(REPO)}
    driver = subprocess.Popen([sys.executable, "-m", "tune.search", *args], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    try:
        trainers = storage / name / "trainers"
        _wait_for(lambda: any(trainers.glob("*/checkpoint_*/state.pt"))
                  and any((storage / name).glob("experiment_state-*.json")),
                  300, "the trial's first checkpoint", driver)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)     # the driver dies; its trial goes with it
        driver.wait()
    time.sleep(5)                                  # let Ray reap the dead job's actors
    first_ckpts = set(trainers.glob("*/checkpoint_*"))

    assert search.main(args + ["--resume"]) == 0
    rows = json.loads((tmp_path / "out" / "trials.json").read_text())
    assert len(rows) == 1 and rows[0]["ok"] and rows[0]["step"] == 40
    assert len(list(trainers.iterdir())) == 1       # the same trial, the same Train run
    assert set(trainers.glob("*/checkpoint_*")) - first_ckpts  # it went on checkpointing

    client = _client(mlflow_store)
    exp = client.get_experiment_by_name("ali-dist-tune")
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 2 and len(children) == 1     # reopened, not duplicated
    assert parent.info.status == "FINISHED" and children[0].info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(children[0].info.run_id, "recon_ratio")]
    # continued from the checkpoint (a restart from scratch would log step 10 twice)
    assert steps[0] == 10 and steps.count(10) == 1 and steps[-1] == 40, steps
    best = json.loads((tmp_path / "out" / "best_config.json").read_text())
    assert best["setting"]["lr"] > 0 and f"--config {base}" in best["command"]
    assert children[0].data.params["model.conditional"] == "True"     # what the trial trained
    assert "recon_ratio_z1" in children[0].data.metrics


@pytest.mark.slow
def test_kplus1_search_ranks_trials_by_the_test_error(mlflow_store, ray_cluster, tmp_path):
    """Semi-supervised K+1 through the search path (a TorchTrainer per trial): the test error
    is evaluated at every report, ASHA ranks by it, and the best command trains the same."""
    from tune import search
    out, base = tmp_path / "out", tmp_path / "labels.yaml"
    base.write_text("data:\n  labels: 20\n  loader: webdataset\neval:\n  probe_labels: 0\n")
    assert search.main(["--preset", "digits", "--method", "kplus1", "--config", str(base),
                        "--batch-size", "8", "--budget", "ci", "--trials", "2", "--steps", "20",
                        "--eval-every", "10", "--storage", str(tmp_path / "runs"),
                        "--name", "kplus1-search", "--concurrency", "2", "--out", str(out)]) == 0
    rows = json.loads((out / "trials.json").read_text())
    assert len(rows) == 2 and all(r["ok"] for r in rows), rows
    errors = [r["classify_error"] for r in rows]
    assert errors == sorted(errors) and all(0 <= e <= 1 for e in errors), rows
    best = json.loads((out / "best_config.json").read_text())
    assert best["classify_error"] == errors[0], (best, rows)
    assert "--method kplus1 --labels 20" in best["command"]

    client = _client(mlflow_store)
    runs = client.search_runs([client.get_experiment_by_name("ali-dist-tune").experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.data.params["metric"] == "classify_error (min)"
    assert parent.data.metrics["best_classify_error"] == errors[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2, rows
    ends = []
    for child in children:
        assert child.data.tags["model"] == "kplus1", child.data.tags
        assert child.info.status == "FINISHED", (child.info, rows)
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "classify_error")]
        assert steps == list(range(10, steps[-1] + 1, 10)), steps       # at every report
        ends.append(steps[-1])
    assert max(ends) == 20, rows                    # ASHA let one run its whole budget
