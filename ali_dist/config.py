"""One typed config tree for a run: model, data, optimisation, run.

Defaults < YAML file (`--config`) < command-line flags. Every field is one flag, and its help
text lives next to it here, so `--help` and the YAML schema can't drift apart. Fields left at
None take the preset's value (the paper's table) in `resolve()`: a hyper-parameter lives once,
in `ali_dist/models/tables.py`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import schedule
from .models.tables import PRESETS, ali_game, get_preset

METHOD_NAMES = ("ali", "gan", "gan_inverse", "gan_posthoc", "vae",   # ali_dist/methods/
                "kplus1", "classifier")
from .schedule import DECAYS


COMPILE_CHOICES = ("auto", "on", "all", "off")      # --compile: `step.resolve_compile`


def _f(default, help: str, choices=None, flag: str | None = None):
    return field(default=default, metadata={"help": help, "choices": choices, "flag": flag})


@dataclass
class ModelConfig:
    preset: str = _f("digits", "architecture and hyper-parameters of one paper table; the "
                     "hali-* presets are hierarchical ALI (x -> z1 -> z2, README \"HALI\")",
                     choices=tuple(PRESETS))
    method: str = _f("ali", "training method: ali (encoder + decoder + D(x, z), the paper's "
                     "game); gan (decoder + D(x)); the paper's Figure 8 baselines gan_inverse "
                     "(a GAN, then an encoder fitted to invert its decoder), gan_posthoc (a "
                     "GAN, then an encoder by the ALI game) and vae; semi-supervised kplus1 "
                     "(D(x, z) with K + 1 outputs: the data's K classes and 'decoder pair', "
                     "trained on --labels labelled images and all the rest unlabelled) and its "
                     "baseline classifier (the same D trained on the --labels images alone)",
                     choices=METHOD_NAMES)
    classes: int | None = _f(None, "kplus1/classifier: K, the data's class count (default: "
                             "read from the data's manifest)")
    init_std: float | None = _f(None, "std of the N(0, std) weight init (default: the preset's, "
                                "0.01 as in the paper)")
    bn_momentum: float | None = _f(None, "batch-norm running statistics move this share of "
                                   "the way to each training batch's (they are what eval mode "
                                   "normalises with; default: the preset's)")
    d_dropout: float | None = _f(None, "dropout at this rate on every discriminator layer's "
                                 "input, 0 for none (default: the paper table's rates; the "
                                 "digits preset trains ALI's game with 0, other methods with "
                                 "the table's)")
    z_dim: int | None = _f(None, "width of the latent z (HALI: of z2) that the prior draws "
                           "from (default: the preset's; the digits preset trains ALI's game "
                           "with 8, other methods with 32)")
    encoder_noise: int | None = _f(None, "vector data (the toy): the encoder takes N(0, I) "
                                   "noise of this width beside x and outputs z itself, an "
                                   "implicit q(z|x) free to cover the prior; 0: a Gaussian "
                                   "q(z|x) (default: the preset's, 2 for the toy; always 0 "
                                   "for the VAE, whose bound needs q's density)")
    d_pack: int | None = _f(None, "the discriminator judges packs of this many pairs (x, z) "
                            "side by side, one logit per pack (PacGAN's packing), so a batch "
                            "of pairs from few modes looks fake; the batch must be a multiple "
                            "of it (default: the preset's, 1)")
    conditional: bool = _f(False, "conditional ALI/HALI (paper eq. 7): the data's labels or "
                           "attributes (y) are embedded linearly into the encoder, the decoder "
                           "and the discriminator; sample and reconstruct then take y. Needs a "
                           "preset whose data has them (methods ali and gan)")
    y_dim: int | None = _f(None, "with --conditional: the number of classes (or attributes) "
                           "of the data (default: the preset's, e.g. 10 for digits, 40 "
                           "attributes for CelebA)")


@dataclass
class DataConfig:
    data: str | None = _f(None, "training data: a manifest.json, a shard directory, a shard "
                          "pattern (brace expansion allowed) or URL; default: the preset's "
                          "embedded data (the 25-Gaussian toy set, or scikit-learn's digits)")
    val_data: str | None = _f(None, "validation shards for grids and metrics (default: the "
                              "manifest's validation split, else the training data)")
    loader: str = _f("auto", "input pipeline: dali, webdataset, or auto (DALI where it "
                     "imports, else webdataset)", choices=("auto", "dali", "webdataset"))
    loader_threads: int = _f(2, "decode threads per worker")
    flip: bool = _f(False, "random horizontal flips of training images (off by default: "
                    "the paper trains without augmentation; digits must not be mirrored)")
    image_size: int | None = _f(None, "image side the loader delivers (default: the "
                                "preset's; set from it, shown for reference)")
    channels: int | None = _f(None, "image channels the loader delivers (default: the "
                              "preset's)")
    skip_bad_samples: bool = _f(False, "skip corrupt or malformed samples with a counted "
                                "warning instead of stopping with an error")
    cache_dir: str | None = _f(None, "where embedded datasets are converted to shards "
                               "(default: ~/.cache/ali_dist)")
    labels: int | None = _f(None, "kplus1/classifier: labelled training images, drawn "
                            "class-balanced from the first 10,000 with --label-seed; the rest "
                            "count as unlabelled (default: the preset's, 1,000 as in the "
                            "paper's SVHN table, 100 for digits)")
    label_seed: int = _f(0, "seed of the labelled draw: fixed, so runs that differ in --seed "
                         "train on the same labels")
    cache_on_device: bool = _f(False, "decode the training split once into the worker's "
                               "device memory (uint8) and serve shuffled (and, with --flip, "
                               "flipped) batches from there: for datasets that fit (CelebA "
                               "at 64 px is about 2.5 GB per worker)")


@dataclass
class OptimConfig:
    batch_size: int | None = _f(None, "batch size PER WORKER (default: the preset's; the "
                                "global batch is this x --workers)")
    lr: float | None = _f(None, "Adam learning rate (default: the preset's, 1e-4 in the paper; "
                           f"the digits preset trains ALI's game at {PRESETS['digits'].ali_lr:g}, "
                           f"other methods at {PRESETS['digits'].lr:g})")
    beta1: float | None = _f(None, "Adam beta1 (default: the preset's, 0.5 in the paper)")
    beta2: float | None = _f(None, "Adam beta2 (default 0.999; the paper's 1e-3 is 1 - beta2)")
    steps: int | None = _f(None, "training steps, one D and one E/G update each (default: the "
                           "preset's budget: minutes for toy and digits, the paper's epochs "
                           "for the image presets)")
    epochs: float | None = _f(None, "training epochs over the data instead of --steps")
    precision: str = _f("auto", "auto: bf16 autocast on GPU, fp32 on CPU; or bf16, fp16 "
                        "(with gradient scaling), fp32", choices=("auto", "bf16", "fp16", "fp32"))
    update: str | None = _f(None, "simultaneous: D and E/G gradients from one batch, "
                            "applied together (the original code); alternating: D step, then "
                            "E/G step on a fresh pass (default: the preset's)",
                            choices=("simultaneous", "alternating"))
    lr_decay: str | None = _f(None, "learning-rate decay after --lr-hold: none (the paper), "
                              "cosine or linear down to --lr-final x --lr at the last step "
                              "(default: the preset's)", choices=DECAYS)
    lr_hold: float | None = _f(None, "share of the steps at the full rate before the decay "
                               "starts (default: the preset's)")
    lr_final: float | None = _f(None, "the rate at the last step as a share of --lr "
                                "(default: the preset's)")
    r1: float | None = _f(None, "R1 penalty weight gamma: gamma/2 x the squared norm of D's "
                          "gradient at the encoder pairs (x, E(x)), added to D's loss; keeps "
                          "D from winning outright on small data (default: the preset's; 0, "
                          "the paper's, for the paper presets)")
    r1_every: int = _f(4, "apply the R1 penalty every N steps (x N, so its strength is the "
                       "same): the lazy regularisation that makes it cheap")
    cycle: float | None = _f(None, "weight of an explicit reconstruction term in the "
                             "encoder/decoder loss of ALI's game: cycle x the mean squared "
                             "error of G(E(x)) against x; 0 is the paper's ALI (default: the "
                             "preset's for method ali: 10 for digits, 0 for the paper presets)")
    cycle_until: float | None = _f(None, "share of the run during which the cycle term is "
                                   "on (1: all of it); after it the game alone sharpens the "
                                   "samples (default: the preset's; 1, but 0.31 for the toy, "
                                   "its rate's hold)")
    d_steps: int | None = _f(None, "discriminator updates per encoder/decoder update (with "
                             "--update alternating; they reuse the step's batch; default: the "
                             "preset's with its alternating updates, 2 for the toy, else 1)")
    compile: str = _f("auto", "torch.compile the networks. on: all but the discriminator, "
                      "which stays eager (compiled, its backward would also compute its "
                      "weight gradients in the encoder/decoder pass, which the eager step "
                      "skips); all: every network (D still eager under R1, whose double "
                      "backward torch.compile cannot take); off: none; auto: on with CUDA, "
                      "off on CPU (README, Performance). If compiling fails the run says "
                      "so and trains uncompiled", choices=COMPILE_CHOICES)
    channels_last: str = _f("auto", "keep networks and batches channels-last (NHWC): on, "
                            "off, or auto (on with CUDA, where cuDNN's fast kernels want it; "
                            "off on CPU: 1.04-1.21x faster there, but the README's CPU results "
                            "were trained in NCHW and change with it)",
                            choices=("auto", "on", "off"))


@dataclass
class RunConfig:
    workers: int | None = _f(None, "Ray Train workers, one process each (one GPU each with "
                             "GPUs); default: one per GPU of this machine, else 1 with every "
                             "core (the global batch stays the preset's)")
    gpus_per_worker: float | None = _f(None, "GPUs per worker (default: 1 where the cluster "
                                       "has GPUs, else 0: CPU with gloo)")
    cpus_per_worker: float | None = _f(None, "CPUs Ray reserves per worker, also its torch "
                                       "threads; default: 1 with GPUs or on a cluster "
                                       "(RAY_ADDRESS), else this machine's cores shared among "
                                       "the workers")
    sync_bn: bool = _f(False, "batch-norm statistics over the global batch (every worker's "
                       "samples) instead of each worker's share: use it when the batch per "
                       "worker is small (4 workers x 25 is not the paper's batch of 100 for "
                       "batch norm)")
    seed: int = _f(0, "random seed (data order, init, noise)")
    name: str | None = _f(None, "run name in Ray storage and MLflow (default: preset-time)")
    output: str | None = _f(None, "directory for the trained model (config + weights) that "
                            "ali_dist.load() reads (default: <storage>/<name>/model)")
    storage: str | None = _f(None, "Ray storage for checkpoints: a local path or a URI Ray "
                             "accepts, e.g. s3://bucket/path (default: ./ali_runs)")
    experiment: str = _f("ali-dist", "MLflow experiment name")
    log_every: int = _f(100, "steps between progress lines and metric reports")
    eval_every: int = _f(1000, "steps between evaluations (mode counts, image grids)")
    checkpoint_every: int = _f(1000, "steps between checkpoints (and at the end)")
    keep_checkpoints: int = _f(3, "checkpoints kept in storage")
    max_failures: int = _f(3, "worker-group restarts from the last checkpoint after a failure")
    resume: bool = _f(False, "continue the newest checkpoint of the run called --name")
    time_limit: float | None = _f(None, "stop training after this many minutes (then "
                                  "evaluate and save as at the end)")
    on_divergence: str = _f("rollback", "when a loss turns NaN/Inf or the discriminator "
                            "collapses: stop with an error, or roll back to the last good "
                            "checkpoint with the learning rate times --rollback-lr-factor",
                            choices=("stop", "rollback"))
    rollback_lr_factor: float = _f(0.5, "learning-rate factor applied at each rollback")
    max_rollbacks: int = _f(3, "rollbacks allowed before stopping with an error")
    collapse_loss: float = _f(1e-4, "the discriminator counts as collapsed (it wins "
                              "outright and the generator gets no gradient) when its loss "
                              "falls below this; 0 disables the check")
    verbose: bool = _f(False, "show Ray's own output on the console (worker and controller "
                       "logs, tracebacks); by default it goes to the log file named in the "
                       "start line and the console shows progress, evaluations and the summary")
    register: str | None = _f(None, "register the trained model in the MLflow model registry "
                              "under this name (each run adds a version)")
    log_checkpoints: bool = _f(False, "also log every checkpoint to MLflow, as artifacts "
                               "checkpoints/step_<step>/state.pt (they are in Ray storage "
                               "either way)")
    grad_compression: str = _f("none", "gradients on the wire between workers: none (fp32) "
                               "or bf16 (half the bytes, for slow links between nodes; "
                               "gradients keep 8 bits of mantissa)", choices=("none", "bf16"))
    bucket_mb: float = _f(25.0, "DDP gradient bucket size in MB: each bucket is all-reduced "
                          "as soon as its gradients are ready, overlapping the rest of the "
                          "backward pass")


@dataclass
class EvalConfig:
    probe_labels: int | None = _f(None, "labels for the paper's L2-SVM probe on encoder "
                                  "features at the end of an image run with class labels "
                                  "(class-balanced; 0 turns it off; default: the preset's, "
                                  "1,000 as in the paper)")
    probe_draws: int = _f(100, "random label draws the probe's test error is averaged over "
                          "(the paper: 100)")
    metrics: str = _f("", "comma-separated metrics computed at every --eval-every besides "
                      "the reconstruction error and the grids: fid (FID and KID, needs "
                      "Inception weights: --inception), probe (the L2-SVM probe, otherwise at "
                      "the end only), classify (a kplus1/classifier model's test error, "
                      "otherwise at the end only), attributes (attribute accuracy of "
                      "reconstructions, attribute data)", flag="--eval-metrics")
    inception: str | None = _f(None, "FID/KID feature network: a TorchScript Inception-v3 file "
                               "mapping (B, 3, 299, 299) images in [-1, 1] to 2,048-d pool "
                               "features (default: $ALI_DIST_INCEPTION, else the file the "
                               "[fid] extra installs); 'random' is a small random network "
                               "for checking the plumbing, whose numbers are not FIDs. "
                               "Never downloaded")
    fid_samples: int = _f(10_000, "samples (and real training images, at most the split's) "
                          "FID and KID compare; published FIDs use 50,000")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        sections = {}
        for f in dataclasses.fields(cls):
            sub = dict(d.get(f.name) or {})
            if f.name == "model" and "variant" in sub:    # configs saved before --method
                sub.setdefault("method", sub.pop("variant"))
            known = {g.name for g in dataclasses.fields(_SECTIONS[f.name])}
            unknown = set(sub) - known
            if unknown:
                raise ValueError(f"unknown key(s) in config section {f.name!r}: "
                                 f"{', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
            sections[f.name] = _SECTIONS[f.name](**sub)
        extra = set(d) - set(_SECTIONS)
        if extra:
            raise ValueError(f"unknown config section(s) {sorted(extra)}; "
                             f"expected {sorted(_SECTIONS)}")
        return cls(**sections)

    def flat(self) -> dict:
        """section.key -> value, for MLflow parameters."""
        return {f"{s}.{k}": v for s, sub in self.to_dict().items() for k, v in sub.items()}


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "run": RunConfig,
             "eval": EvalConfig}


def for_method(cfg: Config, method: str) -> Config:
    """`cfg` (in place) for training `method` instead: a search that trains several methods
    from one base (the toy study's ALI, GAN and baselines) gives ALI's cycle term to ALI only;
    the others take resolve's default (none), where an explicit --cycle would be refused."""
    cfg.model.method = method
    if method != "ali":
        cfg.optim.cycle = None
    return cfg


def resolve(cfg: Config) -> Config:
    """Fill every None that the preset decides, and check what can be checked early."""
    p = get_preset(cfg.model.preset)
    o = cfg.optim
    if cfg.model.method not in METHOD_NAMES:
        raise ValueError(f"unknown method {cfg.model.method!r}; choose one of "
                         f"{', '.join(METHOD_NAMES)}")
    from .methods import check_model           # imported here: methods import the models
    from .models.base import condition_dim
    check_model(cfg.model.method, p, cfg.model.conditional)
    if cfg.model.y_dim is not None and not cfg.model.conditional:
        raise ValueError("--y-dim is for conditional models: add --conditional")
    if cfg.model.conditional:
        cfg.model.y_dim = condition_dim(p, True, cfg.model.y_dim)
    d = cfg.data
    d.data = d.data or p.default_data or None
    for name, value in (("image_size", p.image_size), ("channels", p.channels)):
        if getattr(d, name) is None:
            setattr(d, name, value)
        elif getattr(d, name) != value:
            raise ValueError(f"--{name.replace('_', '-')} {getattr(d, name)} does not match "
                             f"preset {p.name!r}, whose networks take {value}")
    game = ali_game(p, cfg.model.method)       # what the preset tunes for ALI's game alone
    o.batch_size = o.batch_size or p.batch_size
    o.lr = (game["lr"] or p.lr) if o.lr is None else o.lr
    o.beta1 = p.beta1 if o.beta1 is None else o.beta1
    o.beta2 = p.beta2 if o.beta2 is None else o.beta2
    for name in ("update", "lr_decay", "lr_hold", "lr_final", "r1"):
        if getattr(o, name) is None:
            setattr(o, name, getattr(p, name))
    if o.d_steps is None:       # the preset's D steps go with its alternating updates
        o.d_steps = p.d_steps if o.update == "alternating" else 1
    schedule.check(o.lr_decay, o.lr_hold, o.lr_final)
    if o.cycle is None:
        o.cycle = game["cycle"]
    if o.cycle < 0:
        raise ValueError(f"--cycle must be 0 (off) or positive, got {o.cycle}")
    if o.cycle_until is None:
        o.cycle_until = p.cycle_until
    if not 0.0 < o.cycle_until <= 1.0:
        raise ValueError(f"--cycle-until is a share of the run in (0, 1], got {o.cycle_until}")
    if o.cycle and (cfg.model.method != "ali" or p.is_hierarchical):
        raise ValueError(f"--cycle is a term of ALI's game on a flat model (method ali, not "
                         f"{cfg.model.method!r}{' on HALI' if p.is_hierarchical else ''})")
    if cfg.model.init_std is None:
        cfg.model.init_std = p.init_std
    if cfg.model.bn_momentum is None:
        cfg.model.bn_momentum = p.bn_momentum
    if not 0.0 < cfg.model.bn_momentum <= 1.0:
        raise ValueError(f"--bn-momentum is a share in (0, 1], got {cfg.model.bn_momentum}")
    if cfg.model.d_dropout is None:
        cfg.model.d_dropout = game["d_dropout"]
    if cfg.model.z_dim is None:
        cfg.model.z_dim = game["z_dim"] or p.z_dim
    if cfg.model.z_dim < 1:
        raise ValueError(f"--z-dim is a width of at least 1, got {cfg.model.z_dim}")
    from .methods import d_pack, encoder_noise
    cfg.model.encoder_noise = encoder_noise(cfg.model.method, p, cfg.model.encoder_noise)
    cfg.model.d_pack = d_pack(cfg.model.method, p, cfg.model.d_pack, cfg.model.conditional)
    if o.batch_size % cfg.model.d_pack:
        raise ValueError(f"--batch-size {o.batch_size} (per worker) must be a multiple of "
                         f"--d-pack {cfg.model.d_pack}: D judges whole packs of pairs")
    if cfg.model.d_dropout is not None and not 0.0 <= cfg.model.d_dropout < 1.0:
        raise ValueError(f"--d-dropout is a rate in [0, 1), got {cfg.model.d_dropout}")
    if cfg.eval.probe_labels is None:
        cfg.eval.probe_labels = p.probe_labels if p.is_image else 0
    if d.labels is None:
        d.labels = p.probe_labels
    from .evaluate.suite import check_metrics     # imported here: evaluate imports models
    if "fid" in check_metrics(cfg.eval.metrics):
        from .evaluate.fid import locate
        locate(cfg.eval.inception)                   # no weights: say so before training
    if o.steps is None and o.epochs is None:  # the preset's budget: a demo, or the paper's
        o.steps, o.epochs = p.steps or None, p.epochs or None
        if cfg.run.time_limit is None and p.demo_minutes:
            cfg.run.time_limit = p.demo_minutes
    _size_workers(cfg.run)
    for name, v in (("batch_size", o.batch_size), ("workers", cfg.run.workers),
                    ("log_every", cfg.run.log_every), ("eval_every", cfg.run.eval_every),
                    ("checkpoint_every", cfg.run.checkpoint_every),
                    ("probe_draws", cfg.eval.probe_draws), ("r1_every", o.r1_every),
                    ("labels", d.labels), ("fid_samples", cfg.eval.fid_samples),
                    ("d_steps", o.d_steps), ("bucket_mb", cfg.run.bucket_mb)):
        if v is None or v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {v}")
    if not 0 <= o.beta1 < 1 or not 0 <= o.beta2 < 1:
        raise ValueError(f"Adam betas must lie in [0, 1), got beta1={o.beta1}, beta2={o.beta2}")
    if o.lr <= 0:
        raise ValueError(f"--lr must be positive, got {o.lr}")
    if o.r1 < 0:
        raise ValueError(f"--r1 must be 0 (off) or positive, got {o.r1}")
    if cfg.eval.probe_labels < 0:
        raise ValueError(f"--probe-labels must be 0 (off) or positive, got "
                         f"{cfg.eval.probe_labels}")
    return cfg


def _size_workers(r: "RunConfig") -> None:
    """Workers and their CPUs where the user left them open. A local machine: one worker per
    GPU; without GPUs one worker with every core, so that the global batch is the preset's
    (the recipe it was measured with) whatever the core count. On the digits demo, 2 cores:
    one 2-thread worker runs 12.2 steps/s of batch 32 (390 samples/s); two 1-thread workers
    run 9.1 steps/s of 2 x 32 (584 samples/s: more samples, a different recipe). A cluster:
    one CPU per worker unless told."""
    on_cluster = bool(os.environ.get("RAY_ADDRESS"))
    gpus = 0
    if not on_cluster and r.gpus_per_worker != 0:
        import torch
        gpus = torch.cuda.device_count()
    if r.workers is None:
        r.workers = max(1, gpus)
    if r.cpus_per_worker is None:
        r.cpus_per_worker = 1 if (gpus or on_cluster) else \
            max(1, (os.cpu_count() or 1) // max(1, r.workers))
    if r.cpus_per_worker <= 0:
        raise ValueError(f"--cpus-per-worker must be positive, got {r.cpus_per_worker}")


def _flag(f) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, sections=None, exclude=()) -> None:
    """One flag per config field, grouped by section; defaults are None so that only flags
    the user typed override the YAML file. `sections`/`exclude`: only those sections, without
    those fields (another command reusing some of the flags)."""
    for section, cls in _SECTIONS.items():
        if sections is not None and section not in sections:
            continue
        group = parser.add_argument_group(section)
        for f in dataclasses.fields(cls):
            if f.name in exclude:
                continue
            default = f.default
            help_ = f.metadata["help"] + ("" if default is None else f" [default: {default}]")
            if f.type in ("bool", bool):
                group.add_argument(_flag(f), dest=f"{section}.{f.name}", default=None,
                                   action=argparse.BooleanOptionalAction, help=help_)
                continue
            kind = {"int": int, "float": float}.get(
                str(f.type).split(" |")[0], str)
            group.add_argument(_flag(f), dest=f"{section}.{f.name}", default=None, type=kind,
                               choices=f.metadata.get("choices"), help=help_,
                               metavar=None if f.metadata.get("choices") else f.name.upper())


def from_args(args: argparse.Namespace, base: dict | None = None) -> Config:
    """Config from defaults, then the `--config` YAML file, then the flags that were given."""
    d = Config().to_dict()
    overlay = dict(base or {})
    if getattr(args, "config", None):
        overlay = load_yaml(args.config)
    for section, values in overlay.items():
        if section not in d or not isinstance(values, dict):
            raise ValueError(f"{getattr(args, 'config', 'config')}: unknown section {section!r}; "
                             f"expected {sorted(d)}")
        d[section].update(values)
    for key, value in vars(args).items():
        if "." in key and value is not None:
            section, name = key.split(".", 1)
            d[section][name] = value
    return Config.from_dict(d)


def load_yaml(path: str) -> dict:
    import yaml
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of sections (model, data, optim, run)")
    return data


def save(cfg: Config, path: Path) -> None:
    path.write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
