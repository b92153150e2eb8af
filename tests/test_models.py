"""Every preset's networks against the paper's tables (appendix A), row by row."""
import pytest
import torch

import ali_dist
from ali_dist.models import PRESETS
from ali_dist.models.networks import Maxout, row_shapes

# (channels, height) after every row, read off Tables 3-6. Spatial sizes follow from the
# unpadded convolutions: out = (in - k) / s + 1, and (in - 1) * s + k for transposed ones.
PAPER = {
    "cifar10": dict(
        encoder=[(32, 28), (64, 13), (128, 10), (256, 4), (512, 1), (512, 1), (128, 1)],
        decoder=[(256, 4), (128, 10), (64, 13), (32, 28), (32, 32), (32, 32), (3, 32)],
        d_x=[(32, 28), (64, 13), (128, 10), (256, 4), (512, 1)],
        d_z=[(512, 1), (512, 1)], d_xz=[(1024, 1), (1024, 1), (1, 1)]),
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


def test_cifar10_discriminator_uses_maxout_and_paper_dropout():
    d = ali_dist.build("cifar10").discriminator
    assert sum(isinstance(m, Maxout) and m.pieces == 2 for m in d.modules()) == 9
    drops = [m.p for m in d.d_x.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops == [0.2, 0.5, 0.5, 0.5, 0.5]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("variant", ["ali", "gan"])
def test_every_preset_round_trips_shapes(name, variant):
    m = ali_dist.build(name, variant).eval()
    p = m.preset
    n = 2
    x = torch.rand(n, p.channels, p.image_size, p.image_size) if p.is_image else torch.randn(n, 2)
    z = m.prior(n)
    x_fake = m.decode(z)
    assert x_fake.shape == x.shape
    if p.is_image:  # a sigmoid output: pixels in [0, 1]
        assert 0 <= float(x_fake.min()) and float(x_fake.max()) <= 1
    if variant == "ali":
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


def test_init_is_normal_001_with_zero_biases():
    m = ali_dist.build("cifar10")
    w = torch.cat([mod.weight.detach().flatten() for mod in m.modules()
                   if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))])
    assert abs(float(w.std()) - 0.01) < 0.001 and abs(float(w.mean())) < 0.001
    biases = [mod.bias for mod in m.modules()
              if isinstance(mod, torch.nn.Conv2d) and mod.bias is not None]
    assert biases and all(float(b.detach().abs().max()) == 0 for b in biases)


def test_unknown_preset_and_variant_are_clear_errors():
    with pytest.raises(ValueError, match="unknown preset 'cifar100'.*cifar10"):
        ali_dist.build("cifar100")
    with pytest.raises(ValueError, match="unknown variant"):
        ali_dist.build("toy", "vae")
