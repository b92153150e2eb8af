"""HALI and conditional ALI trained for real on the embedded digits (`loop.run`, as every Ray
worker runs it; the two runs side by side, one core each), measured as the issue asks:

- class-conditional samples are classified as the class they were asked for, by a classifier
  trained on the real digits (far above the 10 % of chance);
- HALI's reconstructions from z1 are closer to the inputs than those from z2 and than a random
  other image; from z2 they are, at this budget, no closer than a random image (README, "HALI":
  measured, not asserted);
- HALI's z2 features are useful: the L2-SVM at 100 labels beats raw pixels and an untrained
  encoder of the same architecture (what the training added).

Thresholds: measured at seed 0 on this budget (README, "HALI" and "Conditional ALI"), with
margins of several times the difference the seed-0 numbers show.
"""
import multiprocessing as mp
import tempfile
from pathlib import Path

import pytest
import torch

from ali_dist import config as config_lib, loop
from ali_dist.data import make_loader
from ali_dist.evaluate import reconstruction_error
from ali_dist.evaluate.probe import model_features, svm_probe, untrained_encoder
from ali_dist.methods import build_model

pytestmark = pytest.mark.slow

STEPS = 1500               # each run about 3 minutes on one core; the two train side by side
SEED = 0


def _config(data: str, preset: str, conditional: bool) -> config_lib.Config:
    cfg = config_lib.Config()
    cfg.model.preset, cfg.model.conditional = preset, conditional
    cfg.data.data = data
    cfg.optim.steps, cfg.run.seed = STEPS, SEED
    # the recipe of the K+1 digits runs (tests/digits_runs.py): D must not win outright (a
    # wider init, a light R1 on its x-gradient); a smaller batch at a higher rate gets further
    # in the minutes a test may train
    cfg.optim.r1, cfg.model.init_std = 1.0, 0.05
    cfg.optim.batch_size, cfg.optim.lr = 32, 5e-4
    cfg.run.log_every = cfg.run.eval_every = cfg.run.checkpoint_every = STEPS
    cfg.data.loader, cfg.data.loader_threads = "webdataset", 0
    cfg = config_lib.resolve(cfg)
    cfg.eval.probe_labels = 0                   # measured below, on its own
    return cfg


def _train_in_child(data: str, preset: str, conditional: bool, out: str) -> None:
    """One run of the loop every Ray worker runs, on one core; the weights go to `out`."""
    torch.set_num_threads(1)
    reports = []
    model = loop.run(_config(data, preset, conditional), torch.device("cpu"),
                     lambda m, s: reports.append(m))
    assert reports[-1]["step"] == STEPS and not reports[-1].get("diverged")
    torch.save(model.state_dict(), out)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """HALI on hali-digits and conditional ALI on digits, trained at once in two processes
    (this machine's two cores); {name: (model in eval mode, loader, config)}."""
    from data_tools import ensure_digits
    data = str(ensure_digits(tmp_path_factory.mktemp("digits")))
    runs = {"hali": ("hali-digits", False), "conditional": ("digits", True)}
    out = Path(tempfile.mkdtemp(prefix="hali_train_"))
    ctx = mp.get_context("spawn")
    procs = {name: ctx.Process(target=_train_in_child,
                               args=(data, preset, cond, str(out / f"{name}.pt")))
             for name, (preset, cond) in runs.items()}
    for p in procs.values():
        p.start()
    for name, p in procs.items():
        p.join(1200)
        assert p.exitcode == 0, f"the {name} run failed (exit {p.exitcode})"
    models = {}
    for name, (preset, cond) in runs.items():
        cfg = _config(data, preset, cond)
        model = build_model("ali", preset, cfg.model.init_std, cond)
        model.load_state_dict(torch.load(out / f"{name}.pt", weights_only=True))
        models[name] = (model.eval(), make_loader(cfg, 0, 1, torch.device("cpu")), cfg)
    return models


@pytest.fixture(scope="module")
def hali(trained):
    return trained["hali"]


@pytest.fixture(scope="module")
def conditional(trained):
    return trained["conditional"]


def test_z1_reconstructs_better_than_z2_and_than_random_pairs(hali):
    model, loader, _ = hali
    x, _ = loader.labelled("val", 180)
    torch.manual_seed(0)
    r = reconstruction_error(model, x)
    print(f"reconstruction MSE: z1 {r['recon_mse_z1']:.4f}, z2 {r['recon_mse_z2']:.4f}, "
          f"random pair {r['recon_mse_random_pair']:.4f}")
    assert r["recon_mse_z1"] < 0.8 * r["recon_mse_random_pair"]
    assert r["recon_mse_z1"] < 0.9 * r["recon_mse_z2"]


def test_z2_features_beat_raw_pixels_at_100_labels(hali):
    model, loader, cfg = hali
    xp, yp = loader.labelled("train", 10_000)
    xt, yt = loader.labelled("test", 1_000)
    cut = len(xp) * 4 // 5                       # C chosen on the pool's last fifth
    untrained = untrained_encoder(model, cfg.model.init_std, images=xp[:cut])

    def error(features) -> float:
        f = lambda x: features(x).numpy()
        return svm_probe((f(xp[:cut]), yp[:cut].numpy()), (f(xp[cut:]), yp[cut:].numpy()),
                         (f(xt), yt.numpy()), n_labels=100, draws=20, seed=0).error_mean

    z2 = error(lambda x: model_features(model, x, level=2))
    pixels = error(lambda x: x.flatten(1))
    fresh = error(lambda x: model_features(untrained, x, level=2))
    print(f"L2-SVM test error at 100 labels: z2 {z2:.3f}, pixels {pixels:.3f}, "
          f"untrained {fresh:.3f}")
    assert z2 < pixels - 0.01 and z2 < fresh - 0.03


def test_class_conditional_samples_are_their_class(conditional):
    from sklearn.linear_model import LogisticRegression
    model, loader, _ = conditional
    x, y = loader.labelled("train", 10_000)
    clf = LogisticRegression(max_iter=2000, C=0.1).fit(x.flatten(1).numpy(), y.numpy())
    xt, yt = loader.labelled("test", 1_000)
    assert (clf.predict(xt.flatten(1).numpy()) == yt.numpy()).mean() > 0.9   # it reads digits
    want = torch.arange(10).repeat_interleave(50)
    samples = model.sample(len(want), generator=torch.Generator().manual_seed(7), y=want)
    accuracy = float((clf.predict(samples.flatten(1).numpy()) == want.numpy()).mean())
    print(f"class-conditional samples classified as asked: {accuracy:.3f} (chance 0.1)")
    assert accuracy > 0.5
