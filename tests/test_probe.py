"""The paper's L2-SVM yardstick (ali_dist/evaluate/probe.py) on its own: features, draws, the
protocol. Training runs that end with the probe are in test_train.py."""
import numpy as np
import pytest
import torch

import ali_dist
from ali_dist.evaluate.probe import (balanced_draw, describe, encoder_features, feature_dims,
                                     svm_probe)


def test_features_are_mu_and_the_last_three_hidden_layers():
    m = ali_dist.build("svhn")
    # Table 4's encoder: 256 x 4 x 4 + 512 + 512 + mu 256 (the module docstring reconciles
    # this with the paper's printed 8,960)
    assert feature_dims(m) == 256 * 16 + 512 + 512 + 256
    d = ali_dist.build("digits")
    assert feature_dims(d) == 64 * 16 + 128 + 128 + 32
    x = torch.rand(6, 1, 32, 32)
    d.train()
    f = encoder_features(d.encoder, x, batch_size=4)         # two batches
    assert f.shape == (6, 1312) and d.training                # mode restored
    d.eval()
    with torch.no_grad():
        mu, _ = d.encoder.moments(x)
        h = d.encoder.net[:-1](x)                             # the last hidden layer's output
    torch.testing.assert_close(f[:, -32:], mu)
    torch.testing.assert_close(f[:, -32 - 128:-32], h.flatten(1))


def test_balanced_draws():
    labels = np.repeat(np.arange(10), 30)
    rng = np.random.default_rng(0)
    idx = balanced_draw(labels, 100, rng)
    assert len(set(idx)) == 100 and np.bincount(labels[idx]).tolist() == [10] * 10
    assert not np.array_equal(np.sort(idx), np.sort(balanced_draw(labels, 100, rng)))
    with pytest.raises(ValueError, match="evenly over 10 classes"):
        balanced_draw(labels, 105, rng)
    with pytest.raises(ValueError, match="class 0 has 30 examples.*needs"):
        balanced_draw(labels, 400, rng)


def _split(rng, n, signal):
    y = rng.integers(0, 10, n)
    centres = np.random.default_rng(42).normal(size=(10, 50))
    return (signal * centres[y] + rng.normal(size=(n, 50))).astype(np.float32), y


def test_the_protocol_tells_informative_features_from_noise():
    rng = np.random.default_rng(1)
    good = [_split(rng, n, 1.0) for n in (600, 200, 500)]
    noise = [_split(rng, n, 0.0) for n in (600, 200, 500)]
    r_good = svm_probe(*good, n_labels=100, draws=5, seed=0)
    r_noise = svm_probe(*noise, n_labels=100, draws=5, seed=0)
    assert r_good.error_mean < 0.2 and r_noise.error_mean > 0.75
    assert r_good.draws == 5 and r_good.dims == 50 and r_good.C in (1e-4, 1e-3, 1e-2, 0.1, 1, 10)
    m = r_good.as_metrics("probe") | r_noise.as_metrics("probe_pixels") | {"probe_labels": 100}
    assert "100 labels" in describe(m) and "raw pixels" in describe(m)
