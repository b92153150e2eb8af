"""HALI (hierarchical ALI): the presets' tables row by row and parameter by parameter (written
out again here from the README's design, independent of tables.py), the model's protocol and
inference API, and the adversarial game training it unchanged. Training on the digits is in
test_hali_train.py."""
import pytest
import torch

import ali_dist
from ali_dist import checkpoint, config as config_lib, methods
from ali_dist.methods import Batch
from ali_dist.models import HALI, PRESETS
from ali_dist.models.networks import param_count, row_shapes
from ali_dist.models.tables import z1_size
from ali_dist.step import TrainStep, make_optimizers

HALI_PRESETS = sorted(n for n, p in PRESETS.items() if p.is_hierarchical)


def _svhn_like(w, c1):
    """(channels, side) after every row of a HALI cut from the SVHN table at width `w`."""
    q = lambda n: n * w // 4
    return dict(
        q_z1=[(q(32), 28), (q(64), 13), (q(128), 10), (2 * c1, 10)],
        q_z2=[(q(256), 4), (q(512), 1), (q(512), 1)],
        p_z1=[(q(256), 4), (q(128), 10), (2 * c1, 10)],
        p_x=[(q(64), 13), (q(32), 28), (q(32), 32), (q(32), 32)],
        d_x=[(q(32), 28), (q(64), 13), (q(128), 10)],
        d_xz1=[(q(256), 4), (q(512), 1)],
        d_z=[(q(512), 1), (q(512), 1)], d_xz=[(q(1024), 1), (q(1024), 1), (1, 1)])


_CELEBA64 = dict(
    q_z1=[(64, 63), (128, 29), (256, 13), (64, 13)],
    q_z2=[(256, 4), (512, 1), (512, 1)],        # a 1x1 hidden layer added for the probe
    p_z1=[(512, 4), (256, 13), (64, 13)],
    p_x=[(256, 29), (128, 63), (64, 64)],
    d_x=[(64, 63), (128, 29), (256, 13)], d_xz1=[(256, 4), (512, 1)],
    d_z=[(1024, 1), (1024, 1)], d_xz=[(2048, 1), (2048, 1), (1, 1)])

# (channels, side) after every row; the output rows of q(z2 | z1) (2 x z) and p(x | z1) (the
# image) are checked separately. 128 px: one 2x2/2 stage in front of q(z1 | x) and D(x), one
# before p(x | z1)'s output layer.
SHAPES = {
    "hali-digits": _svhn_like(1, 4),
    "hali-svhn": _svhn_like(4, 16),
    "hali-celeba64": _CELEBA64,
    "hali-celeba128": {**_CELEBA64, "q_z1": [(32, 64)] + _CELEBA64["q_z1"],
                       "p_x": _CELEBA64["p_x"] + [(32, 128)],
                       "d_x": [(32, 64)] + _CELEBA64["d_x"]},
    "hali-imagenet128": dict(
        q_z1=[(32, 64), (64, 31), (64, 28), (128, 13), (128, 10), (64, 10)],
        q_z2=[(256, 4), (256, 1), (2048, 1), (2048, 1)],
        p_z1=[(2048, 1), (256, 1), (256, 4), (128, 10), (64, 10)],
        p_x=[(128, 13), (64, 28), (64, 31), (64, 64), (32, 128)],
        d_x=[(32, 64), (64, 31), (64, 28), (128, 13), (128, 10)], d_xz1=[(256, 4), (256, 1)],
        d_z=[(2048, 1), (2048, 1)], d_xz=[(4096, 1), (4096, 1), (1, 1)]),
}


def _shapes(stack, x):
    return [(s[0], s[1]) for s in row_shapes(stack, x)]


def test_every_hierarchical_preset_is_tested():
    assert sorted(SHAPES) == HALI_PRESETS == ["hali-celeba128", "hali-celeba64", "hali-digits",
                                              "hali-imagenet128", "hali-svhn"]


@pytest.mark.parametrize("name", HALI_PRESETS)
def test_layers_match_the_design(name):
    m = ali_dist.build(name).eval()
    p, t = m.preset, SHAPES[name]
    c1, s1 = m.z1_shape[0], m.z1_shape[1]
    assert s1 == z1_size(p)
    x = torch.rand(2, p.channels, p.image_size, p.image_size)
    z1 = torch.randn(2, c1, s1, s1)
    z2 = torch.randn(2, p.z_dim, 1, 1)
    enc, dec, d = m.encoder, m.decoder, m.discriminator
    assert _shapes(enc.q_z1.net, x) == t["q_z1"]
    assert _shapes(enc.q_z2.net, z1) == t["q_z2"] + [(2 * p.z_dim, 1)]
    assert _shapes(dec.p_z1.net, z2) == t["p_z1"]
    assert _shapes(dec.p_x.net, z1) == t["p_x"] + [(p.channels, p.image_size)]
    assert _shapes(d.d_x, x) == t["d_x"]
    hx = torch.cat([d.d_x(x), z1], 1)              # D(x) meets z1 at z1's resolution
    assert _shapes(d.d_xz1, hx) == t["d_xz1"]
    assert _shapes(d.d_z, z2) == t["d_z"]
    h = torch.cat([d.d_xz1(hx), d.d_z(z2)], 1)     # the joint layers' width is computed
    assert _shapes(d.d_xz, h) == t["d_xz"]


@pytest.mark.parametrize("name", HALI_PRESETS)
def test_batch_norm_where_ali_puts_it_and_none_where_a_latent_enters(name):
    m = ali_dist.build(name)
    has_bn = lambda row: any(isinstance(x, torch.nn.BatchNorm2d) for x in row)
    for net in (m.encoder.q_z1.net, m.encoder.q_z2.net, m.decoder.p_z1.net, m.decoder.p_x.net):
        assert [has_bn(r) for r in net] == [True] * (len(net) - 1) + [False]
    d = m.discriminator
    assert [has_bn(r) for r in d.d_x] == [False] + [True] * (len(d.d_x) - 1)
    assert not any(has_bn(r) for r in list(d.d_xz1) + list(d.d_z) + list(d.d_xz))
    for row in list(d.d_x) + list(d.d_xz1) + list(d.d_z) + list(d.d_xz):
        assert isinstance(row[0], torch.nn.Dropout) and row[0].p == 0.2


def _count(layers) -> int:
    return sum(k * k * cin * cout + (cout if bias else 0) + (2 * cout if bn else 0)
               for k, cin, cout, bias, bn in layers)


def _svhn_like_params(c, z, w, c1, img=32):
    """(encoder, decoder, discriminator) parameters: (kernel, in, out, bias, batch norm)."""
    q = lambda n: n * w // 4
    enc = [(5, c, q(32), 0, 1), (4, q(32), q(64), 0, 1), (4, q(64), q(128), 0, 1),
           (1, q(128), 2 * c1, 1, 0),                                           # q(z1 | x)
           (4, c1, q(256), 0, 1), (4, q(256), q(512), 0, 1), (1, q(512), q(512), 0, 1),
           (1, q(512), 2 * z, 1, 0)]                                            # q(z2 | z1)
    dec = [(4, z, q(256), 0, 1), (4, q(256), q(128), 0, 1), (1, q(128), 2 * c1, 1, 0),
           (4, c1, q(64), 0, 1), (4, q(64), q(32), 0, 1), (5, q(32), q(32), 0, 1),
           (1, q(32), q(32), 0, 1), (1, q(32), c, 0, 0)]
    d = [(5, c, q(32), 1, 0), (4, q(32), q(64), 0, 1), (4, q(64), q(128), 0, 1),
         (4, q(128) + c1, q(256), 1, 0), (4, q(256), q(512), 1, 0),             # D(x, z1)
         (1, z, q(512), 0, 0), (1, q(512), q(512), 0, 0),                       # D(z2)
         (1, 2 * q(512), q(1024), 1, 0), (1, q(1024), q(1024), 1, 0), (1, q(1024), 1, 1, 0)]
    return _count(enc), _count(dec) + c * img * img, _count(d)


def _celeba_params(at_128: bool):
    c1 = 32
    front = [(2, 3, 32, 0, 1)] if at_128 else []
    enc = front + [(2, 32 if at_128 else 3, 64, 0, 1), (7, 64, 128, 0, 1), (5, 128, 256, 0, 1),
                   (1, 256, 2 * c1, 1, 0),
                   (7, c1, 256, 0, 1), (4, 256, 512, 0, 1), (1, 512, 512, 0, 1),
                   (1, 512, 512, 1, 0)]
    dec = [(4, 256, 512, 0, 1), (7, 512, 256, 0, 1), (1, 256, 2 * c1, 1, 0),
           (5, c1, 256, 0, 1), (7, 256, 128, 0, 1), (2, 128, 64, 0, 1)] + \
        ([(2, 64, 32, 0, 1), (1, 32, 3, 0, 0)] if at_128 else [(1, 64, 3, 0, 0)])
    d = ([(2, 3, 32, 1, 0), (2, 32, 64, 0, 1)] if at_128 else [(2, 3, 64, 1, 0)]) + \
        [(7, 64, 128, 0, 1), (5, 128, 256, 0, 1),
         (7, 256 + c1, 256, 1, 0), (4, 256, 512, 1, 0),
         (1, 256, 1024, 0, 0), (1, 1024, 1024, 0, 0),
         (1, 1536, 2048, 1, 0), (1, 2048, 2048, 1, 0), (1, 2048, 1, 1, 0)]
    img = 128 if at_128 else 64
    return _count(enc), _count(dec) + 3 * img * img, _count(d)


def _imagenet128_params():
    c1 = 32
    enc = [(2, 3, 32, 0, 1), (4, 32, 64, 0, 1), (4, 64, 64, 0, 1), (4, 64, 128, 0, 1),
           (4, 128, 128, 0, 1), (1, 128, 2 * c1, 1, 0),
           (4, c1, 256, 0, 1), (4, 256, 256, 0, 1), (1, 256, 2048, 0, 1), (1, 2048, 2048, 0, 1),
           (1, 2048, 512, 1, 0)]
    dec = [(1, 256, 2048, 0, 1), (1, 2048, 256, 0, 1), (4, 256, 256, 0, 1), (4, 256, 128, 0, 1),
           (1, 128, 2 * c1, 1, 0),
           (4, c1, 128, 0, 1), (4, 128, 64, 0, 1), (4, 64, 64, 0, 1), (4, 64, 64, 0, 1),
           (2, 64, 32, 0, 1), (1, 32, 3, 0, 0)]
    d = [(2, 3, 32, 1, 0), (4, 32, 64, 0, 1), (4, 64, 64, 0, 1), (4, 64, 128, 0, 1),
         (4, 128, 128, 0, 1),
         (4, 128 + c1, 256, 1, 0), (4, 256, 256, 1, 0),
         (1, 256, 2048, 1, 0), (1, 2048, 2048, 1, 0),              # D(z2): with biases here
         (1, 2304, 4096, 1, 0), (1, 4096, 4096, 1, 0), (1, 4096, 1, 1, 0)]
    return _count(enc), _count(dec) + 3 * 128 * 128, _count(d)


EXPECTED_PARAMS = {
    "hali-digits": _svhn_like_params(1, 32, 1, 4),
    "hali-svhn": _svhn_like_params(3, 256, 4, 16),
    "hali-celeba64": _celeba_params(False),
    "hali-celeba128": _celeba_params(True),
    "hali-imagenet128": _imagenet128_params(),
}


@pytest.mark.parametrize("name", HALI_PRESETS)
def test_parameter_counts_match_the_design(name):
    m = ali_dist.build(name)
    got = tuple(param_count(n) for n in (m.encoder, m.decoder, m.discriminator))
    assert got == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", HALI_PRESETS)
def test_protocol_and_api_shapes(name):
    torch.manual_seed(0)
    m = ali_dist.build(name).eval()
    assert isinstance(m, HALI) and m.is_hierarchical
    p, n = m.preset, 2
    x = torch.rand(n, p.channels, p.image_size, p.image_size)
    with torch.no_grad():
        z1, z2 = m.inference(x)
        x_fake, (z1_p, z2_p) = m.generation(m.prior(n))
        logits = m.criticise(torch.cat([x, x_fake]), [torch.cat([z1, z1_p]),
                                                       torch.cat([z2, z2_p])])
    assert z1.shape == z1_p.shape == (n, *m.z1_shape) and z2.shape == z2_p.shape == (n, p.z_dim)
    assert x_fake.shape == x.shape and logits.shape == (2 * n,)
    assert m.encode(x, level=1).shape == (n, *m.z1_shape)
    assert m.encode(x).shape == m.encode(x, level=2).shape == (n, p.z_dim)
    for level in (1, 2):
        assert m.reconstruct(x, level=level).shape == x.shape
    assert m.decode(m.encode(x, level=1)).shape == x.shape       # the level from z's shape
    s = m.sample(3)
    assert s.shape == (3, *x.shape[1:]) and 0 <= float(s.min()) and float(s.max()) <= 1


def test_api_levels_and_means():
    torch.manual_seed(0)
    m = ali_dist.build("hali-digits").eval()
    x = torch.rand(4, 1, 32, 32)
    mu1 = m.encode(x, level=1, sample=False)
    assert torch.equal(mu1, m.encode(x, level=1, sample=False))
    assert not torch.equal(m.encode(x, level=1), m.encode(x, level=1))     # z1 is sampled
    with torch.no_grad():
        mu2, _ = m.encoder.q_z2.moments(mu1)                             # mu2 of mu1
        x1 = m.decoder.p_x(mu1)
    torch.testing.assert_close(m.encode(x, sample=False), mu2)
    torch.testing.assert_close(m.reconstruct(x, level=1, sample=False), x1)
    with pytest.raises(ValueError, match="levels 1"):
        m.encode(x, level=3)
    with pytest.raises(ValueError, match=r"level-2 codes have shape \(B, 32\)"):
        m.decode(torch.randn(4, 31), level=2)
    with pytest.raises(ValueError, match=r"level-1 codes"):
        m.decode(torch.randn(4, 32), level=1)


def test_hierarchical_presets_train_with_the_ali_game_only():
    with pytest.raises(ValueError, match="hierarchical.*'ali'"):
        ali_dist.build("hali-digits", "gan")
    cfg = config_lib.Config()
    cfg.model.preset, cfg.model.method = "hali-svhn", "vae"
    with pytest.raises(ValueError, match="hierarchical"):
        config_lib.resolve(cfg)
    with pytest.raises(ValueError, match="build it as HALI"):
        ali_dist.models.ALI("hali-digits")
    with pytest.raises(ValueError, match="build it as ALI"):
        HALI("digits")


@pytest.mark.parametrize("update", ["simultaneous", "alternating"])
def test_the_adversarial_game_trains_every_hali_network(update):
    """The game of methods/adversarial.py, unchanged: one step moves D and all four
    conditionals (the gradient reaches q(z2 | z1) and p(z1 | z2) through the triples)."""
    cfg = config_lib.Config()
    cfg.model.preset, cfg.optim.update = "hali-digits", update
    cfg = config_lib.resolve(cfg)
    torch.manual_seed(0)
    method = methods.build(cfg)
    step = TrainStep(method, make_optimizers(method, 1e-3, 0.5, 0.999), torch.device("cpu"),
                     "fp32")
    m = method.model
    nets = [m.encoder.q_z1, m.encoder.q_z2, m.decoder.p_z1, m.decoder.p_x, m.discriminator]
    before = [[p.detach().clone() for p in n.parameters()] for n in nets]
    out = step(Batch(torch.rand(8, 1, 32, 32), torch.arange(8)), method.stages(10)[0], 0)
    assert torch.isfinite(out["loss_d"]) and torch.isfinite(out["loss_g"])
    for net, old in zip(nets, before):
        assert any(not torch.equal(a, b) for a, b in zip(old, net.parameters())), net


def test_load_rebuilds_hali_from_the_saved_config(tmp_path):
    cfg = config_lib.Config()
    cfg.model.preset = "hali-digits"
    cfg = config_lib.resolve(cfg)
    torch.manual_seed(3)
    model = methods.build(cfg).model
    checkpoint.export_model(tmp_path, model.state_dict(), cfg.to_dict())
    loaded = ali_dist.load(tmp_path)
    assert isinstance(loaded, HALI) and not loaded.training
    x = torch.rand(3, 1, 32, 32)
    model.eval()
    torch.testing.assert_close(loaded.encode(x, sample=False), model.encode(x, sample=False))
