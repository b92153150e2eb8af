"""Losses and the one training step: the paper's equations, both update schemes, R1,
precisions, every method's phases."""
import pytest
import torch

from ali_dist import config as config_lib, losses, methods
from ali_dist.methods import Batch
from ali_dist.step import TrainStep, make_optimizers, resolve_compile, resolve_precision


def make(preset="toy", method="ali", lr=1e-3, init_std=None, **optim):
    """A method and its step for a resolved config (seeded). On the toy, the paper's game
    unless a test asks for the cycle term (the toy's recipe trains with it)."""
    if preset == "toy":
        optim.setdefault("cycle", 0.0)
    cfg = config_lib.Config()
    cfg.model.preset, cfg.model.method, cfg.model.init_std = preset, method, init_std
    for k, v in optim.items():
        setattr(cfg.optim, k, v)
    cfg = config_lib.resolve(cfg)
    torch.manual_seed(0)
    m = methods.build(cfg)
    step = TrainStep(m, make_optimizers(m, lr, 0.5, 0.999), torch.device("cpu"),
                     optim.get("precision", "fp32"))
    return m, step, m.stages(10)[0]


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


def test_adam_per_group_with_the_papers_values():
    m, step, _ = make()
    assert set(step.opt) == {"d", "g"}
    assert step.opt["d"].defaults["betas"] == (0.5, 0.999)
    g_ids = {id(p) for g in step.opt["g"].param_groups for p in g["params"]}
    model = m.model
    assert g_ids == {id(p) for p in list(model.encoder.parameters()) +
                     list(model.decoder.parameters())}


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("update", ["simultaneous", "alternating"])
@pytest.mark.parametrize("method", ["ali", "gan"])
def test_step_updates_every_network(update, method):
    m, step, stage = make(method=method, update=update)
    model = m.model
    nets = [model.decoder, model.discriminator] + ([model.encoder] if model.encoder else [])
    before = [_snapshot(n) for n in nets]
    out = step(Batch(torch.randn(32, 2)), stage, 0)
    assert set(out) == {"loss_d", "loss_g", "d_acc", "d_real", "d_fake"}
    for net, old in zip(nets, before):
        assert any(not torch.equal(a, b) for a, b in zip(old, net.parameters()))


def test_simultaneous_update_takes_both_gradients_from_one_graph():
    """The step's D gradient is that of the D loss alone and its E/G gradient that of the
    generator loss alone, both from the same forward pass. lr=0 keeps the weights fixed and
    the gradients in place, so they can be compared with ones computed by hand."""
    m, step, stage = make(lr=0.0, init_std=0.1, update="simultaneous")  # logits away from 0
    x = torch.randn(16, 2)
    torch.manual_seed(1)
    step(Batch(x), stage, 1)
    torch.manual_seed(1)  # the same prior z and encoder noise as inside the step
    real, fake, _ = m.logits(x, {"step": 1}, detach=False, penalty=False)
    d, g = step.params["d"], step.params["g"]
    gd = torch.autograd.grad(losses.discriminator_loss(real, fake), d, retain_graph=True)
    gg = torch.autograd.grad(losses.generator_loss(real, fake), g, retain_graph=True)
    for want, p in zip(gd + gg, d + g):
        assert torch.allclose(want, p.grad, atol=1e-6)
    # and the generator's gradient is not the D loss's with the sign flipped (non-saturating)
    flipped = torch.autograd.grad(-losses.discriminator_loss(real, fake), g)
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(flipped, gg))


def test_alternating_runs_the_encoder_and_decoder_forward_once_per_step():
    m, step, stage = make(update="alternating", d_steps=2)
    assert [p.name for p in stage.phases] == ["d", "d", "g"]
    calls = {"enc": 0, "dec": 0, "d": 0}
    m.model.encoder.register_forward_hook(lambda *_: calls.__setitem__("enc", calls["enc"] + 1))
    m.model.decoder.register_forward_hook(lambda *_: calls.__setitem__("dec", calls["dec"] + 1))
    m.model.discriminator.register_forward_hook(lambda *_: calls.__setitem__("d", calls["d"] + 1))
    step(Batch(torch.randn(16, 2)), stage, 0)
    assert calls == {"enc": 1, "dec": 1, "d": 3}


def test_r1_penalty_is_the_x_gradient_norm_at_the_encoder_pairs_every_n_steps():
    m, step, stage = make(r1=2.0, r1_every=3)
    x = torch.randn(16, 2)
    torch.manual_seed(5)
    real, _, r1 = m.logits(x, {"step": 0}, detach=True, penalty=True)
    torch.manual_seed(5)
    x_ = x.clone().requires_grad_(True)
    sides = m.generated(x_, {})
    z_hat = sides[2][0].detach().requires_grad_(True)
    logits = m.model.criticise(torch.cat([x_, sides[0].detach()]),
                               [torch.cat([z_hat, sides[1][0]])])
    (gx,) = torch.autograd.grad(logits[:16].sum(), [x_])
    want = gx.pow(2).sum(1).mean()
    assert torch.allclose(r1, want, rtol=1e-4)
    assert "r1" in step(Batch(x), stage, 0) and "r1" in step(Batch(x), stage, 3)
    assert "r1" not in step(Batch(x), stage, 1)


def test_precision_resolution():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("fp8", torch.device("cpu"))
    assert resolve_compile("auto", torch.device("cpu")) == "off"
    assert resolve_compile("auto", torch.device("cuda")) == "on"
    assert resolve_compile("on", torch.device("cpu")) == "on"
    with pytest.raises(ValueError, match="--compile must be one of"):
        resolve_compile("yes", torch.device("cpu"))


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_step_runs_in_each_cpu_precision(precision):
    m, step, stage = make("digits", precision=precision, r1=1.0, r1_every=1)
    out = step(Batch(torch.rand(8, 1, 32, 32)), stage, 0)
    assert all(torch.isfinite(v) for v in out.values())
    assert all(p.dtype == torch.float32 for p in m.parameters())  # master weights stay fp32


@pytest.mark.parametrize("method", ["gan_inverse", "gan_posthoc", "vae"])
def test_every_stage_of_the_baselines_trains_what_it_names(method):
    m, step, _ = make(method=method)
    for stage in m.stages(10):
        m.begin_stage(stage)
        groups = {g for p in stage.phases for g in p.groups}
        before = {g: [_snapshot(n) for n in m.groups()[g]] for g in step.params}
        step(Batch(torch.randn(32, 2)), stage, 0)
        for g, old in before.items():
            changed = any(not torch.equal(a, b) for net, snap in zip(m.groups()[g], old)
                          for a, b in zip(snap, net.parameters()))
            assert changed == (g in groups), (method, stage.name, g)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_step_on_gpu(precision):
    dev = torch.device("cuda")
    m, _, stage = make("svhn")
    m.to(dev)
    step = TrainStep(m, make_optimizers(m, 1e-4, 0.5, 0.999), dev, precision=precision)
    out = step(Batch(torch.rand(16, 3, 32, 32, device=dev)), stage, 0)
    assert all(torch.isfinite(v) for v in out.values())
    if precision == "fp16":
        assert step.scaler.is_enabled()


def test_compile_falls_back_to_eager_with_a_message_when_compiling_fails(capfd):
    """A machine without a working C++ compiler (inductor's CPU backend needs one): the first
    step says so once, trains eagerly, and every later step stays eager."""
    import torch._inductor.config as inductor
    m, _, stage = make()
    step = TrainStep(m, make_optimizers(m, 1e-3, 0.5, 0.999), torch.device("cpu"), "fp32",
                     compile="all")
    assert len(step.compiled) == 3                      # encoder, decoder, discriminator
    before = _snapshot(m)
    with inductor.patch({"cpp.cxx": ("/nonexistent/c++",)}):   # (monkeypatch's undo loses it)
        out = step(Batch(torch.randn(32, 2)), stage, 0)
    assert "--compile: compiling failed (InductorError" in capfd.readouterr().out
    assert step.compiled == [] and all(torch.isfinite(v) for v in out.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, m.parameters()))
    assert all(n._compiled_call_impl is None for g in m.groups().values() for n in g)
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes"):   # other errors surface
        step(Batch(torch.randn(32, 3)), stage, 1)


def test_channels_last_and_fused_adam_train_on_cpu():
    m, _, stage = make("digits")
    step = TrainStep(m, make_optimizers(m, 1e-3, 0.5, 0.999, fused=True), torch.device("cpu"),
                     "fp32", channels_last=True)
    conv = next(p for p in m.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert all(o.defaults["fused"] for o in step.opt.values())
    out = step(Batch(torch.rand(8, 1, 32, 32)), stage, 0)
    assert all(torch.isfinite(v) for v in out.values())


def test_cycle_term_is_the_reconstruction_error_in_eg_loss_only():
    """--cycle adds cycle x MSE(G(E(x)), x) to E/G's loss, from the step's own E(x) sample;
    D's loss is the game's alone, in both update schemes."""
    for update in ("simultaneous", "alternating"):
        m, step, stage = make(preset="digits", update=update, cycle=4.0)
        plain = methods.Adversarial(m.model, update=update)
        x = torch.rand(8, 1, 32, 32)
        m.model.train()
        torch.manual_seed(3)
        losses_c, metrics = m.loss(stage.phases[-1].name, Batch(x), {"step": 1})
        torch.manual_seed(3)
        ctx = {"step": 1}
        losses_p, _ = plain.loss(stage.phases[-1].name, Batch(x), ctx)
        z_hat = ctx["sides"][2][0]
        want = (m.model.decoder(z_hat).float() - x).pow(2).mean()
        assert torch.allclose(metrics["cycle_mse"], want.detach(), rtol=1e-3)
        assert torch.allclose(losses_c["g"], losses_p["g"] + 4.0 * want, rtol=1e-3)
        if "d" in losses_c:
            assert torch.allclose(losses_c["d"], losses_p["d"], rtol=1e-5)
        assert "cycle_mse" in step(Batch(x), stage, 0)


def test_cycle_term_stops_after_its_share_of_the_run():
    """--cycle-until S: the term is in E/G's loss for the first S of the run's steps (by the
    step counter the loop resumes from), then the loss is the game's alone."""
    m, step, stage = make(preset="toy", update="alternating", cycle=10.0, cycle_until=0.5)
    assert m.cycle_stop == 5                                 # make() plans a 10-step run
    plain = methods.Adversarial(m.model, update="alternating")
    x = torch.randn(200, 2)
    assert "cycle_mse" in step(Batch(x), stage, 4)
    assert "cycle_mse" not in step(Batch(x), stage, 5)
    for at, same in ((4, False), (5, True)):
        torch.manual_seed(3)
        with_term, _ = m.loss("g", Batch(x), {"step": at})
        torch.manual_seed(3)
        game, _ = plain.loss("g", Batch(x), {"step": at})
        assert torch.equal(with_term["g"], game["g"]) == same, at
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="--cycle-until is a share"):
            make(preset="toy", cycle=10.0, cycle_until=bad)


def test_cycle_term_belongs_to_alis_game_on_a_flat_model():
    def cfg(**kw):
        c = config_lib.Config()
        for k, v in kw.items():
            setattr(c.model if k in ("preset", "method") else c.optim, k, v)
        return config_lib.resolve(c)
    assert cfg(preset="digits").optim.cycle == 10.0       # the demo's preset
    assert cfg(preset="svhn").optim.cycle == 0.0          # the paper's ALI
    assert cfg(preset="digits", method="kplus1").optim.cycle == 0.0
    assert cfg(preset="hali-digits").optim.cycle == 0.0
    assert cfg(preset="digits", cycle=0.0).optim.cycle == 0.0
    for bad in ({"method": "gan", "cycle": 1.0}, {"preset": "hali-digits", "cycle": 1.0}):
        with pytest.raises(ValueError, match="--cycle is a term of ALI's game"):
            cfg(**{"preset": "digits", **bad})
    with pytest.raises(ValueError, match="--cycle must be 0"):
        cfg(preset="digits", cycle=-1.0)


def test_d_dropout_is_the_digits_games_and_the_flags_everywhere():
    """The digits preset trains ALI's game with no dropout in D; K+1 and HALI keep the
    table's (README, "The digits preset"); `--d-dropout` sets every D layer's rate."""
    def built(**kw):
        c = config_lib.Config()
        for k, v in kw.items():
            setattr(c.model, k, v)
        c = config_lib.resolve(c)
        d = methods.build(c).model.discriminator
        return c.model.d_dropout, sorted({x.p for x in d.modules()
                                          if isinstance(x, torch.nn.Dropout)})
    assert built(preset="digits") == (0.0, [])
    assert built(preset="digits", method="kplus1", classes=10) == (None, [0.2])
    assert built(preset="hali-digits") == (None, [0.2])
    assert built(preset="svhn") == (None, [0.2])
    assert built(preset="cifar10") == (None, [0.2, 0.5])            # the authors' two rates
    assert built(preset="cifar10", d_dropout=0.3) == (0.3, [0.3])
    assert built(preset="hali-digits", d_dropout=0.0) == (0.0, [])   # z1's D rows too
    assert built(preset="digits", d_dropout=0.2) == (0.2, [0.2])
    with pytest.raises(ValueError, match="--d-dropout is a rate"):
        built(preset="digits", d_dropout=1.0)


def test_z_dim_is_the_digits_games_and_the_flag_everywhere():
    """ALI's digits game draws z of 8 dimensions; K+1 and HALI keep the table's 32 (README,
    "The digits preset"); `--z-dim` sets z's width for any preset."""
    import ali_dist

    def built(**kw):
        c = config_lib.Config()
        for k, v in kw.items():
            setattr(c.model, k, v)
        c = config_lib.resolve(c)
        m = methods.build(c).model
        return c.model.z_dim, m.z_dim
    assert built(preset="digits") == (8, 8)
    assert built(preset="digits", method="kplus1", classes=10) == (32, 32)
    assert built(preset="hali-digits") == (32, 32)
    assert built(preset="toy", z_dim=3) == (3, 3)
    assert built(preset="svhn", z_dim=64) == (64, 64)
    assert built(preset="digits", conditional=True) == (8, 8)
    demo = methods.build(config_lib.resolve(config_lib.Config())).model.eval()
    assert demo.sample(2).shape == (2, 1, 32, 32)
    assert demo.encode(torch.rand(2, 1, 32, 32)).shape == (2, 8)
    assert ali_dist.build("digits").z_dim == 32                    # the table's
    with pytest.raises(ValueError, match="--z-dim is a width"):
        built(preset="digits", z_dim=0)


def test_a_model_trained_without_d_dropout_loads(tmp_path):
    """D's rows hold no dropout layer then, so its state dict's keys differ from the table's:
    loading rebuilds the model with the run's own rate."""
    import ali_dist
    from ali_dist import checkpoint
    cfg = config_lib.resolve(config_lib.Config())                 # the demo: d_dropout 0
    model = methods.build(cfg).model
    checkpoint.export_model(tmp_path / "model", model.state_dict(), cfg.to_dict())
    loaded = ali_dist.load(tmp_path / "model")
    assert not any(isinstance(x, torch.nn.Dropout) for x in loaded.modules())
    x = torch.rand(4, 1, 32, 32)
    assert torch.equal(loaded.encode(x, sample=False), model.eval().encode(x, sample=False))


@pytest.mark.parametrize("method, eager", [
    ("ali", {"model.discriminator"}),
    ("gan_posthoc", {"model.discriminator", "gan_d"}),     # both stages' D
    ("vae", set())])                                        # no D: everything compiles
def test_compile_on_leaves_the_critics_eager(method, eager):
    """`--compile on`: a compiled network's backward computes all its gradients, so the
    networks other groups' losses backpropagate through (D) stay eager; the rest compile."""
    m, _, _ = make(method=method)
    step = TrainStep(m, make_optimizers(m, 1e-3, 0.5, 0.999), torch.device("cpu"), "fp32",
                     compile="on")
    trained = {name for name, n in m.named_modules()
               if any(n is k for g in m.groups().values() for k in g)}
    compiled = {name for name, n in m.named_modules() if n._compiled_call_impl is not None}
    assert eager <= trained and compiled == trained - eager
    assert len(step.compiled) == len(compiled) >= 1


def test_under_r1_the_discriminator_is_never_compiled():
    """R1 differentiates D twice, which torch.compile's autograd cannot: "all" keeps D eager
    under R1, and compiles it without."""
    for r1, compiled in ((1.0, {"g[0]:Encoder", "g[1]:Decoder"}),
                         (0.0, {"d[0]:Discriminator", "g[0]:Encoder", "g[1]:Decoder"})):
        m, _, _ = make("digits", r1=r1)
        step = TrainStep(m, make_optimizers(m, 1e-3, 0.5, 0.999), torch.device("cpu"),
                         "fp32", compile="all")
        assert set(step.compiled) == compiled, r1


def test_a_step_with_compile_on_trains_as_the_eager_step(monkeypatch):
    """The compiled encoder and decoder (D eager) train as the eager ones: the same
    parameters after two steps. (The toy encoder draws its input noise inside the network:
    with `fallback_random` compiled code draws eager's numbers.)"""
    import torch._inductor.config as inductor
    monkeypatch.setattr(inductor, "fallback_random", True)
    torch._dynamo.reset()               # no graph compiled by an earlier test without it
    params = {}
    for mode in ("off", "on"):
        m, _, stage = make()
        step = TrainStep(m, make_optimizers(m, 1e-3, 0.5, 0.999), torch.device("cpu"),
                         "fp32", compile=mode)
        g = torch.Generator().manual_seed(1)
        for i in range(2):
            torch.manual_seed(10 + i)                   # the step's own draws (z, E's noise)
            step(Batch(torch.randn(64, 2, generator=g)), stage, i)
        params[mode] = [p.detach().clone() for p in m.parameters()]
    assert len(params["on"]) == len(params["off"])
    for a, b in zip(params["on"], params["off"]):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
