"""Semi-supervised K+1 ALI (`--method kplus1`) against its baseline, the same discriminator
trained on the labels alone (`--method classifier`): real training on the embedded digits
through the loop every Ray worker runs (`digits_runs.py`), 100 labels, the test error each
logs at the end."""
import numpy as np
import pytest
import torch

import ali_dist
import digits_runs
from ali_dist import checkpoint, config as config_lib, methods
from ali_dist.models.kplus1 import KPlus1ALI, real_logit


def test_real_logit_is_the_log_odds_of_any_class():
    logits = torch.randn(5, 11)
    p = torch.softmax(logits, 1)
    expected = torch.log(p[:, :10].sum(1)) - torch.log(p[:, 10])
    torch.testing.assert_close(real_logit(logits), expected)


def test_kplus1_model_classifies_and_round_trips(tmp_path):
    m = KPlus1ALI("digits", classes=10).eval()
    x = torch.rand(4, 1, 32, 32)
    assert m.classify(x).shape == (4, 10)
    assert m.criticise(x, [m.encode(x)]).shape == (4,)          # the game's one logit
    cfg = config_lib.Config()
    cfg.model.method, cfg.model.classes = "kplus1", 10
    checkpoint.export_model(tmp_path, m.state_dict(), cfg.to_dict())
    loaded = ali_dist.load(tmp_path)
    torch.testing.assert_close(loaded.classify(x), m.classify(x))
    with pytest.raises(ValueError, match="class count"):
        methods.build_model("kplus1", "digits")


def test_labelled_subset_is_class_balanced_and_fixed():
    from ali_dist.data import make_loader
    cfg = digits_runs.config("kplus1", 1)
    loader = make_loader(cfg, 0, 1, torch.device("cpu"))
    a, b = methods.build(cfg), methods.build(cfg)
    assert cfg.model.classes == 10                     # read from the manifest
    a.prepare(loader)
    b.prepare(loader)
    assert np.bincount(a.subset.y.numpy()).tolist() == [10] * 10
    assert torch.equal(a.subset.x, b.subset.x)          # the same draw on every rank
    cfg.data.label_seed = 1
    c = methods.build(cfg)
    c.prepare(loader)
    assert not torch.equal(a.subset.x, c.subset.x)


@pytest.mark.slow
def test_kplus1_beats_the_same_discriminator_trained_on_the_labels_alone():
    errors = {}
    for method in ("classifier", "kplus1"):
        _, final, saved = digits_runs.trained(method)
        assert final["step"] == digits_runs.STEPS[method] and saved["model"]["classes"] == 10
        assert final["classify_test_images"] == 180                  # the test split
        errors[method] = final["classify_error"]
    _, final, _ = digits_runs.trained("kplus1")
    assert 0.3 < final["d_acc"] < 0.95                                  # the game still plays
    print(f"digits, {digits_runs.LABELS} labels: test error K+1 {errors['kplus1']:.3f}, "
          f"labels alone {errors['classifier']:.3f}")
    assert errors["kplus1"] < errors["classifier"] - 0.02
