"""HALI and conditional ALI trained for real on the embedded digits (`loop.run`, as every Ray
worker runs it; the two runs side by side, one core each), measured as the issue asks:

- class-conditional samples are classified as the class they were asked for, by a classifier
  trained on the real digits (far above the 10 % of chance);
- HALI's reconstructions from z1 are closer to the inputs than those from z2, and both closer
  than a random other image (at 3,500 steps with hali-digits' schedule, the rate falling over
  the second half; at a constant rate z2's swing around the random pair, README "HALI");
- HALI's z2 features are useful: the L2-SVM at 100 labels beats raw pixels and an untrained
  encoder of the same architecture (what the training added).

Thresholds: measured at seed 0 on this budget (README, "HALI" and "Conditional ALI"), with
margins of several times the difference the seed-0 numbers show (z2's reconstruction ratio:
0.82 in this run, 0.73-0.82 over seeds and budgets of 3,500 and 5,000 steps; asserted below
0.95).
"""
import pytest
import torch

import digits_runs
from ali_dist.data import make_loader
from ali_dist.evaluate import reconstruction_error
from ali_dist.evaluate.probe import model_features, svm_probe, untrained_encoder

pytestmark = pytest.mark.slow


def _run(name: str):
    """(model, loader of its data, its config): `digits_runs` trains it (the preset's batch,
    rate, R1 and init std; HALI 3,500 steps with the rate falling linearly to 0.1x over the
    second half, conditional ALI 1,500 without the cycle term; seed 0, one core)."""
    model, _, _ = digits_runs.trained(name)
    cfg = digits_runs.run_config(name)
    return model, make_loader(cfg, 0, 1, torch.device("cpu")), cfg


@pytest.fixture(scope="module")
def hali():
    return _run("hali")


@pytest.fixture(scope="module")
def conditional():
    return _run("conditional")


def test_z1_reconstructs_better_than_z2_and_than_random_pairs(hali):
    model, loader, _ = hali
    x, _ = loader.labelled("val", 180)
    torch.manual_seed(0)
    r = reconstruction_error(model, x)
    print(f"reconstruction MSE: z1 {r['recon_mse_z1']:.4f}, z2 {r['recon_mse_z2']:.4f}, "
          f"random pair {r['recon_mse_random_pair']:.4f}")
    assert r["recon_mse_z1"] < 0.8 * r["recon_mse_random_pair"]
    assert r["recon_mse_z1"] < 0.9 * r["recon_mse_z2"]
    assert r["recon_mse_z2"] < 0.95 * r["recon_mse_random_pair"]


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
