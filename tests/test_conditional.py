"""Conditional ALI and HALI (paper section 4.4, eq. 7): y as the networks read it, where each
network embeds it (as the authors' conditional code), the API, the game passing the batch's y,
the config's checks, the conditional grids. Training on the digits is in
test_hali_train.py."""
import numpy as np
import pytest
import torch

import ali_dist
from ali_dist import checkpoint, config as config_lib, loop, methods
from ali_dist.evaluate import evaluate
from ali_dist.evaluate.grids import (CELEBA_ATTRIBUTES, FIGURE7_COLUMNS, FIGURE7_ROWS,
                                     attribute_sequence_grid, class_conditional_grid,
                                     figure7_attributes)
from ali_dist.methods import Batch
from ali_dist.models.condition import as_vector
from ali_dist.models.networks import param_count
from ali_dist.step import TrainStep, make_optimizers


def test_y_as_the_networks_read_it():
    v = as_vector(torch.tensor([2, 0]), "class", 4)
    assert v.tolist() == [[0, 0, 1, 0], [1, 0, 0, 0]] and v.dtype == torch.float32
    assert as_vector(3, "class", 5, n=2).tolist() == [[0, 0, 0, 1, 0]] * 2     # one for all
    assert torch.equal(as_vector(v, "class", 4), v)                             # one-hot kept
    a = torch.tensor([[1, 0, 1], [0, 0, 1]], dtype=torch.uint8)                # loaders' attrs
    assert as_vector(a, "attributes", 3).tolist() == [[1, 0, 1], [0, 0, 1]]
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 4\)"):
        as_vector([4], "class", 4)
    with pytest.raises(ValueError, match="expected 40 attributes"):
        as_vector(a, "attributes", 40)
    with pytest.raises(ValueError, match="3 conditions for 2 examples"):
        as_vector([1, 2, 3], "class", 4, n=2)


def test_y_is_embedded_where_the_authors_put_it():
    """One linear embedding per network (E = z's width), concatenated to the input of the
    encoder's output layer, the decoder's first layer and D's joint layers: the parameter count
    grows by exactly that, and nothing else changes."""
    plain, cond = ali_dist.build("digits"), ali_dist.build("digits", conditional=True)
    z, e, k = 32, 32, 10
    emb = k * e + e                                          # Linear(10 classes -> 32)
    assert param_count(cond.encoder) - param_count(plain.encoder) == emb + e * 2 * z * 1 * 1
    assert param_count(cond.decoder) - param_count(plain.decoder) == emb + e * 64 * 4 * 4
    assert param_count(cond.discriminator) - param_count(plain.discriminator) == emb + e * 256
    assert cond.encoder.net.cond_at == len(cond.encoder.net) - 1
    assert cond.decoder.net.cond_at == 0 and cond.discriminator.d_xz.cond_at == 0
    h = ali_dist.build("hali-digits", conditional=True)
    for net in (h.encoder.q_z1, h.encoder.q_z2, h.decoder.p_z1, h.decoder.p_x,
                h.discriminator):
        assert net.embed.in_features == 10 and net.embed.out_features == e


@pytest.mark.parametrize("preset", ["digits", "hali-digits"])
def test_every_network_depends_on_y(preset):
    torch.manual_seed(0)
    m = ali_dist.build(preset, conditional=True, init_std=0.05).eval()
    x = torch.rand(4, 1, 32, 32)
    y0, y1 = torch.zeros(4, dtype=torch.long), torch.full((4,), 7)
    z = m.prior(4)
    kw = {"level": 1} if m.is_hierarchical else {}
    assert not torch.allclose(m.encode(x, y0, sample=False, **kw),
                              m.encode(x, y1, sample=False, **kw))
    assert not torch.allclose(m.decode(z, y0), m.decode(z, y1))
    with torch.no_grad():
        lat = m.inference(x, y0)
        assert not torch.allclose(m.criticise(x, lat, y0), m.criticise(x, lat, y1))
    assert m.sample(4, y=3).shape == m.reconstruct(x, y0).shape == x.shape
    with pytest.raises(ValueError, match="is conditional: pass y"):
        m.sample(2)
    with pytest.raises(ValueError, match="not conditional"):
        ali_dist.build(preset).sample(2, y=1)


def test_the_game_plays_with_the_batchs_y():
    """Eq. 7: encoder triples (x, E(x, y), y) against decoder triples (G(z, y), z, y), y of
    the data on both sides: the step's losses change when only y changes."""
    cfg = config_lib.Config()
    cfg.model.preset, cfg.model.conditional, cfg.model.init_std = "digits", True, 0.05
    cfg = config_lib.resolve(cfg)
    x = torch.rand(8, 1, 32, 32)
    losses = []
    for y in (torch.zeros(8, dtype=torch.long), torch.arange(8)):
        torch.manual_seed(0)
        method = methods.build(cfg)
        step = TrainStep(method, make_optimizers(method, 0.0, 0.5, 0.999), torch.device("cpu"),
                         "fp32")
        torch.manual_seed(1)
        losses.append(float(step(Batch(x, y), method.stages(1)[0], 0)["loss_d"]))
    assert losses[0] != losses[1]
    with pytest.raises(ValueError, match="is conditional: pass y"):
        step(Batch(x), method.stages(1)[0], 0)


def test_config_checks_and_load_rebuilds_a_conditional_model(tmp_path):
    def resolve(**model):
        cfg = config_lib.Config()
        for k, v in model.items():
            setattr(cfg.model, k, v)
        return config_lib.resolve(cfg)

    assert resolve(preset="digits", conditional=True).model.y_dim == 10
    assert resolve(preset="celeba64", conditional=True).model.y_dim == 40
    assert resolve(preset="hali-imagenet128", conditional=True, y_dim=200).model.y_dim == 200
    with pytest.raises(ValueError, match="'toy' has no labels or attributes"):
        resolve(preset="toy", conditional=True)
    with pytest.raises(ValueError, match="does not read y"):
        resolve(preset="digits", conditional=True, method="vae")
    with pytest.raises(ValueError, match="--y-dim is for conditional models"):
        resolve(preset="digits", y_dim=10)
    cfg = resolve(preset="svhn", conditional=True, y_dim=7)
    torch.manual_seed(0)
    model = methods.build(cfg).model
    checkpoint.export_model(tmp_path, model.state_dict(), cfg.to_dict())
    loaded = ali_dist.load(tmp_path)
    assert loaded.conditional and loaded.y_dim == 7
    z = torch.randn(2, 256)
    model.eval()
    torch.testing.assert_close(loaded.decode(z, [6, 1]), model.decode(z, [6, 1]))


def test_the_data_must_have_the_y_the_model_reads(tmp_path):
    """On the real digits loader: 10 classes for a model built for 5 is a clear error."""
    from data_tools import ensure_digits
    from ali_dist.data import make_loader
    cfg = config_lib.Config()
    cfg.model.preset, cfg.model.conditional, cfg.model.y_dim = "digits", True, 5
    cfg.data.data = str(ensure_digits(tmp_path))
    cfg = config_lib.resolve(cfg)
    loader = make_loader(cfg, 0, 1, torch.device("cpu"))
    with pytest.raises(ValueError, match="10 classes; the model was built for 5"):
        loop.check_condition(ali_dist.build("digits", conditional=True, y_dim=5), loader)
    loop.check_condition(ali_dist.build("digits", conditional=True), loader)   # 10: fine


def test_figure7_attribute_sequence():
    y = figure7_attributes(CELEBA_ATTRIBUTES)
    assert y.shape == (4 * 12, 40)
    idx = {n: i for i, n in enumerate(CELEBA_ATTRIBUTES)}
    cell = lambda r, c: {CELEBA_ATTRIBUTES[i] for i in y[r * 12 + c].nonzero().flatten()}
    assert cell(0, 0) == {"Male", "Attractive", "Young"}           # row I, column (a)
    assert cell(3, 0) == {"Attractive"}                             # row IV: female, older
    assert cell(2, 11) == {"Attractive", "Young", "Black_Hair", "Smiling", "Mouth_Slightly_Open",
                           "Eyeglasses", "Wearing_Hat"}             # row III, column (l)
    assert all(float(y[r * 12 + c, idx["Blond_Hair"]]) == (c in (3, 5, 6, 7))
               for r in range(4) for c in range(12))
    assert len(FIGURE7_ROWS) == 4 and len(FIGURE7_COLUMNS) == 12
    with pytest.raises(ValueError, match="lack .*Eyeglasses"):
        figure7_attributes([n for n in CELEBA_ATTRIBUTES if n != "Eyeglasses"])


def test_conditional_grids():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    m = ali_dist.build("digits", conditional=True, init_std=0.05).eval()
    grid = class_conditional_grid(m, gen)
    assert grid.shape == (10 * 33 + 1, 10 * 33 + 1, 3)
    rows = grid[1:].reshape(10, 33, -1, 3)[:, :32]                  # 10 class rows
    assert not np.array_equal(rows[0], rows[1])                     # a row per class
    c = ali_dist.build("celeba64", conditional=True).eval()
    g = attribute_sequence_grid(c, CELEBA_ATTRIBUTES, torch.Generator().manual_seed(0))
    assert g.shape == (4 * 65 + 1, 12 * 65 + 1, 3)                  # rows I-IV, columns (a)-(l)


class Pictures:
    """A tracker that keeps the pictures it is given (the evaluation's real output)."""

    def __init__(self):
        self.images = {}

    def image(self, array, path):
        self.images[path] = array


@pytest.mark.parametrize("preset", ["digits", "hali-digits"])
def test_evaluation_of_a_conditional_model_on_the_digits(preset, tmp_path):
    from data_tools import ensure_digits
    from ali_dist.data import make_loader
    cfg = config_lib.Config()
    cfg.model.preset, cfg.model.conditional = preset, True
    cfg.data.data = str(ensure_digits(tmp_path))
    cfg = config_lib.resolve(cfg)
    loader = make_loader(cfg, 0, 1, torch.device("cpu"))
    model = methods.build(cfg).model
    pics = Pictures()
    out = evaluate(model, loader, pics, 7, True, final=True, probe=cfg.eval)
    assert set(pics.images) == {"samples/step_0000007.png", "conditional/step_0000007.png",
                                "reconstructions/step_0000007.png"}
    assert pics.images["conditional/step_0000007.png"].shape == (10 * 33 + 1, 10 * 33 + 1, 3)
    assert out["recon_mse"] > 0 and "probe_error" not in out    # the probe skips: y is input
    w = 10 * 33 + 1
    assert pics.images["reconstructions/step_0000007.png"].shape[1] == \
        (2 * w + 4 if model.is_hierarchical else w)              # HALI: z1 | z2 side by side
