"""Losses and the training step: the paper's equations, both update schemes, precisions."""
import pytest
import torch
import torch.nn.functional as F

import ali_dist
from ali_dist import losses
from ali_dist.step import TrainStep, make_optimizers, resolve_precision


def test_losses_are_the_papers_log_terms():
    real, fake = torch.tensor([0.3, -1.2]), torch.tensor([2.0, -0.4])
    rho_q, rho_p = torch.sigmoid(real), torch.sigmoid(fake)
    ld = -(rho_q.log().mean() + (1 - rho_p).log().mean())            # Algorithm 1
    lg = -((1 - rho_q).log().mean() + rho_p.log().mean())            # eq. 4
    assert torch.allclose(losses.discriminator_loss(real, fake), ld)
    assert torch.allclose(losses.generator_loss(real, fake), lg)
    assert float(losses.discriminator_accuracy(real, fake)) == 0.5
    big = torch.tensor([1e4])  # softplus form stays finite where log(sigmoid) would not
    assert torch.isfinite(losses.discriminator_loss(-big, big))


def test_adam_uses_the_papers_values():
    m = ali_dist.build("toy")
    opt = make_optimizers(m, 1e-4, 0.5, 0.999)
    assert opt.d.defaults["betas"] == (0.5, 0.999) and opt.d.defaults["lr"] == 1e-4
    g_ids = {id(p) for g in opt.g.param_groups for p in g["params"]}
    assert g_ids == {id(p) for p in list(m.encoder.parameters()) + list(m.decoder.parameters())}


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("update", ["simultaneous", "alternating"])
@pytest.mark.parametrize("variant", ["ali", "gan"])
def test_step_updates_every_network(update, variant):
    torch.manual_seed(0)
    m = ali_dist.build("toy", variant)
    step = TrainStep(m, make_optimizers(m, 1e-3, 0.5, 0.999), torch.device("cpu"),
                     update=update)
    nets = [m.decoder, m.discriminator] + ([m.encoder] if m.encoder else [])
    before = [_snapshot(n) for n in nets]
    out = step(torch.randn(32, 2))
    assert set(out) == {"loss_d", "loss_g", "d_acc", "d_real", "d_fake"}
    for net, old in zip(nets, before):
        assert any(not torch.equal(a, b) for a, b in zip(old, net.parameters()))


def test_simultaneous_update_takes_both_gradients_from_one_graph():
    """The step's D gradient is that of the D loss alone and its E/G gradient that of the
    generator loss alone, both from the same forward pass. lr=0 keeps the weights fixed and
    the gradients in place, so they can be compared with ones computed by hand."""
    m = ali_dist.build("toy")
    step = TrainStep(m, make_optimizers(m, 0.0, 0.5, 0.999), torch.device("cpu"))
    x = torch.randn(16, 2)
    torch.manual_seed(1)
    step(x)
    torch.manual_seed(1)  # the same prior z and encoder noise as inside the step
    real, fake, _ = step._logits(x, m.prior(16))
    gd = torch.autograd.grad(losses.discriminator_loss(real, fake), step.d_params,
                             retain_graph=True)
    gg = torch.autograd.grad(losses.generator_loss(real, fake), step.g_params)
    for want, p in zip(gd + gg, step.d_params + step.g_params):
        assert torch.allclose(want, p.grad, atol=1e-6)
    # and the generator's gradient is not the D loss's with the sign flipped (non-saturating)
    flipped = torch.autograd.grad(-losses.discriminator_loss(*step._logits(x, m.prior(16))[:2]),
                                  step.g_params)
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(flipped, gg))


def test_precision_resolution():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("fp8", torch.device("cpu"))


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_step_runs_in_each_cpu_precision(precision):
    torch.manual_seed(0)
    m = ali_dist.build("digits")
    step = TrainStep(m, make_optimizers(m, 2e-4, 0.5, 0.999), torch.device("cpu"),
                     precision=precision)
    out = step(torch.rand(8, 1, 32, 32))
    assert all(torch.isfinite(v) for v in out.values())
    assert all(p.dtype == torch.float32 for p in m.parameters())  # master weights stay fp32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_step_on_gpu(precision):
    torch.manual_seed(0)
    dev = torch.device("cuda")
    m = ali_dist.build("svhn").to(dev)
    step = TrainStep(m, make_optimizers(m, 1e-4, 0.5, 0.999), dev, precision=precision)
    out = step(torch.rand(16, 3, 32, 32, device=dev))
    assert all(torch.isfinite(v) for v in out.values())
    if precision == "fp16":
        assert step.scaler.is_enabled()
