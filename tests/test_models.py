"""Every preset's networks against the paper's tables (appendix A) as the authors' released code
trained them (IshmaelBelghazi/ALI, experiments/ali_*.py), row by row."""
import pytest
import torch

import ali_dist
from ali_dist.models import PRESETS
from ali_dist import losses
from ali_dist.models.networks import Maxout, param_count, row_shapes

# (channels, height) after every row, read off Tables 3-6. Spatial sizes follow from the
# unpadded convolutions: out = (in - k) / s + 1, and (in - 1) * s + k for transposed ones.
# CIFAR-10's D: the code's 2-piece maxout halves every printed width.
PAPER = {
    "cifar10": dict(
        encoder=[(32, 28), (64, 13), (128, 10), (256, 4), (512, 1), (512, 1), (128, 1)],
        decoder=[(256, 4), (128, 10), (64, 13), (32, 28), (32, 32), (32, 32), (3, 32)],
        d_x=[(16, 28), (32, 13), (64, 10), (128, 4), (256, 1)],
        d_z=[(256, 1), (256, 1)], d_xz=[(512, 1), (512, 1), (1, 1)]),
    "svhn": dict(
        encoder=[(32, 28), (64, 13), (128, 10), (256, 4), (512, 1), (512, 1), (512, 1)],
        decoder=[(256, 4), (128, 10), (64, 13), (32, 28), (32, 32), (32, 32), (3, 32)],
        d_x=[(32, 28), (64, 13), (128, 10), (256, 4), (512, 1)],
        d_z=[(512, 1), (512, 1)], d_xz=[(1024, 1), (1024, 1), (1, 1)]),
    "celeba64": dict(
        encoder=[(64, 63), (128, 29), (256, 13), (256, 4), (512, 1), (512, 1)],
        decoder=[(512, 4), (256, 13), (256, 29), (128, 63), (64, 64), (3, 64)],
        d_x=[(64, 63), (128, 29), (256, 13), (256, 4), (512, 1)],
        # Table 5 prints 1024 for the concatenation; the branches give 512 + 1024 = 1536
        d_z=[(1024, 1), (1024, 1)], d_xz=[(2048, 1), (2048, 1), (1, 1)]),
    "tinyimagenet64": dict(
        encoder=[(64, 31), (64, 28), (128, 13), (128, 10), (256, 4), (256, 1), (2048, 1),
                 (2048, 1), (512, 1)],
        decoder=[(2048, 1), (256, 1), (256, 4), (128, 10), (128, 13), (64, 28), (64, 31),
                 (64, 64), (3, 64)],
        d_x=[(64, 31), (64, 28), (128, 13), (128, 10), (256, 4), (256, 1)],
        d_z=[(2048, 1), (2048, 1)], d_xz=[(4096, 1), (4096, 1), (1, 1)]),
}


def _shapes(stack, x):
    return [(s[0], s[1]) for s in row_shapes(stack, x)]


@pytest.mark.parametrize("name", sorted(PAPER))
def test_layers_match_the_paper_table(name):
    m = ali_dist.build(name).eval()
    p, t = m.preset, PAPER[name]
    x = torch.rand(2, 3, p.image_size, p.image_size)
    z = torch.randn(2, p.z_dim, 1, 1)
    assert _shapes(m.encoder.net, x) == t["encoder"]
    assert _shapes(m.decoder.net, z) == t["decoder"]
    assert _shapes(m.discriminator.d_x, x) == t["d_x"]
    assert _shapes(m.discriminator.d_z, z) == t["d_z"]
    h = torch.cat([m.discriminator.d_x(x), m.discriminator.d_z(z)], 1)
    assert h.shape[1] == t["d_x"][-1][0] + t["d_z"][-1][0]  # computed, not the printed width
    assert _shapes(m.discriminator.d_xz, h) == t["d_xz"]


def test_cifar10_discriminator_uses_maxout_and_the_codes_dropout():
    d = ali_dist.build("cifar10").discriminator
    assert sum(isinstance(m, Maxout) and m.pieces == 2 for m in d.modules()) == 9
    # dropout per D(x) row, as ali_cifar10.py places it: before rows 1, 2 and 5; between
    # row 3's convolution and its maxout; none before row 4
    per_row = [[m.p for m in row if isinstance(m, torch.nn.Dropout)] for row in d.d_x]
    assert per_row == [[0.2], [0.5], [0.5], [], [0.5]]
    assert isinstance(d.d_x[2][0], torch.nn.Conv2d) and isinstance(d.d_x[2][1], torch.nn.Dropout)
    assert [[m.p for m in row if isinstance(m, torch.nn.Dropout)] for row in d.d_z] == [[0.2], [0.5]]
    assert all([m.p for m in row if isinstance(m, torch.nn.Dropout)] == [0.5] for row in d.d_xz)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())


@pytest.mark.parametrize("name", ["digits", "svhn", "celeba64", "tinyimagenet64", "celeba128",
                                  "imagenet128"])
def test_batch_norm_where_the_authors_put_it(name):
    """BN after every hidden layer of Gz(x) and Gx(z) and every D(x) convolution but the
    first; none in D(z) or D(x, z); dropout 0.2 on every D input; momentum 0.05."""
    m = ali_dist.build(name)
    has_bn = lambda row: any(isinstance(x, torch.nn.BatchNorm2d) for x in row)
    assert [has_bn(r) for r in m.encoder.net] == [True] * (len(m.encoder.net) - 1) + [False]
    assert [has_bn(r) for r in m.decoder.net] == [True] * (len(m.decoder.net) - 1) + [False]
    d = m.discriminator
    assert [has_bn(r) for r in d.d_x] == [False] + [True] * (len(d.d_x) - 1)
    assert not any(has_bn(r) for r in list(d.d_z) + list(d.d_xz))
    for row in list(d.d_x) + list(d.d_z) + list(d.d_xz):
        assert isinstance(row[0], torch.nn.Dropout) and row[0].p == 0.2
    assert {b.momentum for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)} == {0.05}
    # biases only where no batch norm follows; D(x)'s first layer has one
    assert d.d_x[0][1].bias is not None and all(r[1].bias is None for r in d.d_x[1:])


# Parameter counts computed from the authors' scripts written out again here, layer by layer
# (kernel, in, out, bias, batch norm): independent of tables.py.
def _count(layers) -> int:
    return sum(k * k * cin * cout + (cout if bias else 0) + (2 * cout if bn else 0)
               for k, cin, cout, bias, bn in layers)


def _svhn_like(c, z, w, z_bias, img):
    q = lambda n: n * w // 4
    enc = [(5, c, q(32), 0, 1), (4, q(32), q(64), 0, 1), (4, q(64), q(128), 0, 1),
           (4, q(128), q(256), 0, 1), (4, q(256), q(512), 0, 1), (1, q(512), q(512), 0, 1),
           (1, q(512), 2 * z, 1, 0)]
    dec = [(4, z, q(256), 0, 1), (4, q(256), q(128), 0, 1), (4, q(128), q(64), 0, 1),
           (4, q(64), q(32), 0, 1), (5, q(32), q(32), 0, 1), (1, q(32), q(32), 0, 1),
           (1, q(32), c, 0, 0)]
    dx = [(5, c, q(32), 1, 0), (4, q(32), q(64), 0, 1), (4, q(64), q(128), 0, 1),
          (4, q(128), q(256), 0, 1), (4, q(256), q(512), 0, 1)]
    dz = [(1, z, q(512), z_bias, 0), (1, q(512), q(512), z_bias, 0)]
    dxz = [(1, 2 * q(512), q(1024), 1, 0), (1, q(1024), q(1024), 1, 0), (1, q(1024), 1, 1, 0)]
    return _count(enc), _count(dec) + c * img * img, _count(dx + dz + dxz)


def _celeba64():
    enc = [(2, 3, 64, 0, 1), (7, 64, 128, 0, 1), (5, 128, 256, 0, 1), (7, 256, 256, 0, 1),
           (4, 256, 512, 0, 1), (1, 512, 512, 1, 0)]
    dec = [(4, 256, 512, 0, 1), (7, 512, 256, 0, 1), (5, 256, 256, 0, 1), (7, 256, 128, 0, 1),
           (2, 128, 64, 0, 1), (1, 64, 3, 0, 0)]
    d = [(2, 3, 64, 1, 0), (7, 64, 128, 0, 1), (5, 128, 256, 0, 1), (7, 256, 256, 0, 1),
         (4, 256, 512, 0, 1), (1, 256, 1024, 0, 0), (1, 1024, 1024, 0, 0),
         (1, 1536, 2048, 1, 0), (1, 2048, 2048, 1, 0), (1, 2048, 1, 1, 0)]
    return enc, dec, d


def _tiny64():
    enc = [(4, 3, 64, 0, 1), (4, 64, 64, 0, 1), (4, 64, 128, 0, 1), (4, 128, 128, 0, 1),
           (4, 128, 256, 0, 1), (4, 256, 256, 0, 1), (1, 256, 2048, 0, 1),
           (1, 2048, 2048, 0, 1), (1, 2048, 512, 1, 0)]
    dec = [(1, 256, 2048, 0, 1), (1, 2048, 256, 0, 1), (4, 256, 256, 0, 1), (4, 256, 128, 0, 1),
           (4, 128, 128, 0, 1), (4, 128, 64, 0, 1), (4, 64, 64, 0, 1), (4, 64, 64, 0, 1),
           (1, 64, 3, 0, 0)]
    d = [(4, 3, 64, 1, 0), (4, 64, 64, 0, 1), (4, 64, 128, 0, 1), (4, 128, 128, 0, 1),
         (4, 128, 256, 0, 1), (4, 256, 256, 0, 1), (1, 256, 2048, 1, 0), (1, 2048, 2048, 1, 0),
         (1, 2304, 4096, 1, 0), (1, 4096, 4096, 1, 0), (1, 4096, 1, 1, 0)]
    return enc, dec, d


def _at_128(enc, dec, d):
    """One 2x2/2 stage more on each side; D(x)'s old first layer now has BN, no bias."""
    first = d[0]
    return ([(2, 3, 32, 0, 1), (enc[0][0], 32) + enc[0][2:]] + enc[1:],
            dec[:-1] + [(2, dec[-2][2], 32, 0, 1), (1, 32, 3, 0, 0)],
            [(2, 3, 32, 1, 0), (first[0], 32, first[2], 0, 1)] + d[1:])


def _counts(enc, dec, d, img):
    return _count(enc), _count(dec) + 3 * img * img, _count(d)


def _cifar10():
    enc, dec, _ = _svhn_like(3, 64, 4, 0, 32)
    # maxout D: every layer's outputs halved by 2 pieces before the next layer; biases in D(x)
    # and D(x, z), none in D(z); no batch norm anywhere in D
    d = [(5, 3, 32, 1, 0), (4, 16, 64, 1, 0), (4, 32, 128, 1, 0), (4, 64, 256, 1, 0),
         (4, 128, 512, 1, 0), (1, 64, 512, 0, 0), (1, 256, 512, 0, 0),
         (1, 512, 1024, 1, 0), (1, 512, 1024, 1, 0), (1, 512, 1, 1, 0)]
    return enc, dec, _count(d)


EXPECTED_PARAMS = {
    "svhn": _svhn_like(3, 256, 4, 0, 32),
    "digits": _svhn_like(1, 32, 1, 0, 32),
    "cifar10": _cifar10(),
    "celeba64": _counts(*_celeba64(), 64),
    "tinyimagenet64": _counts(*_tiny64(), 64),
    "celeba128": _counts(*_at_128(*_celeba64()), 128),
    "imagenet128": _counts(*_at_128(*_tiny64()), 128),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_counts_match_the_authors_layers(name):
    m = ali_dist.build(name)
    got = tuple(param_count(n) for n in (m.encoder, m.decoder, m.discriminator))
    assert got == EXPECTED_PARAMS[name]


# D(x) at initialisation on random images (train mode, batch 16 real + 16 fake): the mean |D(x)
# output| and the norm of the D loss's gradient at D(x)'s first layer. Measured with batch
# norm after every D(x) convolution but the first: 0.40-0.41 and 0.07 (digits) to 1.7
# (imagenet128) over seeds 0 and 1; without it (the presets before the authors' code was
# followed): 7e-6 to 2e-2 and 1e-5 to 3e-2. CIFAR-10's maxout D(x) has no batch norm in the
# authors' code: 5.7e-4 and 3e-4, as designed (its Adam steps do not depend on that scale).
LIVELY = {"digits": ((0.2, 1.0), (0.02, 10)), "svhn": ((0.2, 1.0), (0.1, 10)),
          "celeba64": ((0.2, 1.0), (0.1, 10)), "tinyimagenet64": ((0.2, 1.0), (0.1, 10)),
          "celeba128": ((0.2, 1.0), (0.1, 10)), "imagenet128": ((0.2, 1.0), (0.1, 10)),
          "cifar10": ((1e-4, 5e-3), (5e-5, 5e-3))}


@pytest.mark.parametrize("name", sorted(LIVELY))
def test_discriminator_sees_x_at_initialisation(name):
    torch.manual_seed(0)
    m = ali_dist.build(name).train()
    p = m.preset
    x = torch.rand(32, p.channels, p.image_size, p.image_size)
    z = torch.randn(32, p.z_dim)
    real, fake = m.discriminator(x, z).chunk(2)
    losses.discriminator_loss(real, fake).backward()
    with torch.no_grad():
        out = m.discriminator.d_x(x).abs().mean().item()
    grad = m.discriminator.d_x[0][1].weight.grad.norm().item()
    (lo, hi), (glo, ghi) = LIVELY[name]
    assert lo < out < hi, f"mean |D(x)| = {out:.3g}"
    assert glo < grad < ghi, f"first D(x) layer's gradient norm = {grad:.3g}"


@pytest.mark.parametrize("name", sorted(n for n, p in PRESETS.items() if not p.is_hierarchical))
@pytest.mark.parametrize("method", ["ali", "gan"])
def test_every_preset_round_trips_shapes(name, method):     # HALI's: tests/test_hali.py
    m = ali_dist.build(name, method).eval()
    p = m.preset
    n = 2
    x = torch.rand(n, p.channels, p.image_size, p.image_size) if p.is_image else torch.randn(n, 2)
    z = m.prior(n)
    x_fake = m.decode(z)
    assert x_fake.shape == x.shape
    if p.is_image:  # a sigmoid output: pixels in [0, 1]
        assert 0 <= float(x_fake.min()) and float(x_fake.max()) <= 1
    if method == "ali":
        assert m.encode(x).shape == (n, p.z_dim)
        assert m.discriminator(x, z).shape == (n,)
    else:
        assert m.encoder is None and m.discriminator.d_z is None
        assert m.discriminator(x).shape == (n,)
        with pytest.raises(RuntimeError, match="no encoder"):
            m.encode(x)


def test_128px_presets_add_one_stride2_stage():
    for name, base in (("celeba128", "celeba64"), ("imagenet128", "tinyimagenet64")):
        m, b = ali_dist.build(name).eval(), ali_dist.build(base).eval()
        x = torch.rand(1, 3, 128, 128)
        assert row_shapes(m.encoder.net, x)[0] == (32, 64, 64)
        assert row_shapes(m.encoder.net, x)[1:] == row_shapes(b.encoder.net, torch.rand(1, 3, 64, 64))
        z = torch.randn(1, m.z_dim, 1, 1)
        assert row_shapes(m.decoder.net, z)[-2:] == [(32, 128, 128), (3, 128, 128)]


def test_encoder_samples_with_the_reparametrisation():
    torch.manual_seed(0)
    m = ali_dist.build("svhn").eval()
    x = torch.rand(4, 3, 32, 32)
    mu = m.encode(x, sample=False)
    assert torch.equal(mu, m.encode(x, sample=False))       # the mean is deterministic
    z1, z2 = m.encode(x), m.encode(x)
    assert not torch.allclose(z1, z2)                          # samples differ
    with torch.no_grad():
        mu_again, log_sigma = m.encoder.moments(x)
    assert torch.equal(mu_again, mu)
    sigma = log_sigma.exp()
    eps = (z1 - mu) / sigma                                    # z = mu + sigma * eps
    assert abs(float(eps.mean())) < 0.2 and abs(float(eps.std()) - 1) < 0.2


def _model_config(*args):
    """The resolved model section of `python -m ali_dist.train ARGS`."""
    from ali_dist import config as config_lib, train
    return config_lib.resolve(config_lib.from_args(
        train.build_parser().parse_args(list(args)))).model


def test_toy_encoder_takes_noise_beside_x_and_only_the_vae_is_gaussian():
    """The toy's encoder is z = f(x, eps) with 2-D eps beside x (its q(z|x) implicit): z
    varies with eps for a fixed x, `sample=False` is f(x, 0), and it has no moments.
    `--encoder-noise 0` gives the Gaussian encoder of the same table; the VAE always trains
    that one, and the flag is refused where it has no meaning."""
    from ali_dist import methods
    torch.manual_seed(0)
    m = ali_dist.build("toy").eval()
    assert m.encoder.noise == 2 and m.encoder.net[0][0].in_features == 4
    x = torch.randn(8, 2)
    with torch.no_grad():
        z1, z2 = m.encode(x), m.encode(x)
        at_mean = m.encoder.net(torch.cat([x, torch.zeros(8, 2)], 1))
    assert z1.shape == (8, 2) and not torch.allclose(z1, z2)
    assert torch.equal(m.encode(x, sample=False), at_mean)
    with pytest.raises(TypeError, match="implicit"):
        m.encoder.moments(x)
    gaussian = methods.build_model("ali", "toy", encoder_noise_width=0)
    assert gaussian.encoder.net[-1][0].out_features == 4                 # mu and log sigma
    assert methods.build_model("vae", "toy").encoder.noise == 0

    def resolved(*args):
        return _model_config(*args).encoder_noise
    assert resolved("--preset", "toy") == 2 and resolved("--preset", "toy", "--method", "vae") == 0
    assert resolved("--preset", "toy", "--encoder-noise", "0") == 0
    with pytest.raises(ValueError, match="Gaussian"):
        resolved("--preset", "toy", "--method", "vae", "--encoder-noise", "2")
    with pytest.raises(ValueError, match="vector data"):
        resolved("--preset", "digits", "--encoder-noise", "2")


def test_packed_discriminator_judges_whole_packs_of_pairs():
    """`--d-pack m` (PacGAN's packing): D gives one logit per m consecutive pairs, each logit
    reads every pair of its pack and none of another's; ALI's game keeps a pack on one side
    (encoder pairs, then decoder pairs) and trains through it; the flag is refused where a
    pack has no meaning, and a batch that does not fill whole packs is a clear error."""
    from ali_dist import methods
    from ali_dist.methods.base import Batch
    torch.manual_seed(0)
    m = methods.build_model("ali", "toy", pack=4)
    d = m.discriminator
    assert d.pack == 4 and d.d_xz[0][0].in_features == 4 * (2 + 2)
    x, z = torch.randn(8, 2), torch.randn(8, 2)
    with torch.no_grad():
        out = d(x, z)
        x2 = x.clone()
        x2[1] += 1.0                                   # a pair of the first pack
        moved = d(x2, z)
    assert out.shape == (2,)
    assert moved[0] != out[0] and moved[1] == out[1]
    with pytest.raises(ValueError, match="multiple of it"):
        d(x[:6], z[:6])
    method = methods.METHODS["ali"](m, update="alternating")
    loss, metrics = method.loss("d", Batch(torch.randn(200, 2), None), {"step": 0})
    loss["d"].backward()
    assert d.d_xz[0][0].weight.grad.abs().sum() > 0 and 0 <= float(metrics["d_acc"]) <= 1
    # a GAN's D(x) packs x alone
    assert methods.build_model("gan", "toy", pack=2).discriminator.d_xz[0][0].in_features == 4

    def resolved(*args):
        return _model_config(*args).d_pack
    assert resolved("--preset", "toy") == 1 and resolved("--preset", "toy", "--d-pack", "4") == 4
    assert resolved("--preset", "toy", "--method", "vae") == 1
    with pytest.raises(ValueError, match="multiple of --d-pack 3"):
        resolved("--preset", "toy", "--d-pack", "3")
    for refused in (("--method", "vae"), ("--preset", "hali-digits"),
                    ("--preset", "digits", "--method", "kplus1", "--classes", "10")):
        with pytest.raises(ValueError, match="packing is for"):
            resolved("--preset", "toy", "--d-pack", "2", *refused)


def test_init_is_normal_001_with_zero_biases():
    m = ali_dist.build("cifar10")
    w = torch.cat([mod.weight.detach().flatten() for mod in m.modules()
                   if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))])
    assert abs(float(w.std()) - 0.01) < 0.001 and abs(float(w.mean())) < 0.001
    biases = [mod.bias for mod in m.modules()
              if isinstance(mod, torch.nn.Conv2d) and mod.bias is not None]
    assert biases and all(float(b.detach().abs().max()) == 0 for b in biases)


def test_unknown_preset_and_method_are_clear_errors():
    with pytest.raises(ValueError, match="unknown preset 'cifar100'.*cifar10"):
        ali_dist.build("cifar100")
    with pytest.raises(ValueError, match="unknown method 'bigan'.*gan_posthoc"):
        ali_dist.build("toy", "bigan")
