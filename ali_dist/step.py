"""One training step of any method (`ali_dist/methods/`): its phases in order, under the run's
precision, each group's loss backpropagated into that group's parameters only, gradients
averaged across ranks by DDP while the backward pass runs, each group's optimiser stepped.

Knows the method interface and nothing of where batches come from or where results go. Every
entry point (the Ray worker, Tune trials, tests, benchmarks) trains through `TrainStep`.

The step never waits for the device: no `.item()`, no Python branch on a tensor. Its metrics
come back as device tensors; the loop looks at them only at logging points.

Data parallelism (`distributed.py`): one DDP wrapper per optimiser group a stage trains,
made when the stage first runs, over the parameters that train in it. A phase runs its loss
once as the forward pass of the wrappers of the groups it updates, then one backward pass per
group with `inputs=` that group's parameters: DDP all-reduces each group's gradient buckets
as they become ready. ALI's simultaneous update (phase "joint", groups d and g) is one
forward and two backward passes; the alternating update's E/G phase runs D outside its
wrapper (D's gradients are neither wanted nor reduced there).
"""
from __future__ import annotations

import contextlib
import sys

import torch

from . import distributed
from .config import COMPILE_CHOICES
from .methods import Batch, Method, Stage

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
SWITCHES = ("auto", "on", "off")


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto": bf16 autocast on CUDA, fp32 elsewhere (CPU autocast is slower than fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def resolve_switch(name: str, value: str, device: torch.device) -> bool:
    """--channels-last: "auto" turns it on for CUDA only. It was faster on CPU too (README,
    "Performance"), but the documented CPU results were trained in NCHW, and short runs there
    change with the float rounding."""
    if value not in SWITCHES:
        raise ValueError(f"--{name} must be one of {SWITCHES}, got {value!r}")
    return value == "on" or (value == "auto" and device.type == "cuda")


def resolve_compile(value: str, device: torch.device) -> str:
    """--compile -> "on", "all" or "off" (`compile_networks`). "auto": "on" with CUDA (fewer
    FLOPs than "all"; which is faster there is pending a GPU measurement: the benchmark times
    both); "off" on CPU, where the first compilation costs more than a short run wins back
    and the documented CPU results were trained eagerly (README, "Performance")."""
    if value not in COMPILE_CHOICES:
        raise ValueError(f"--compile must be one of {COMPILE_CHOICES}, got {value!r}")
    if value == "auto":
        return "on" if device.type == "cuda" else "off"
    return value


def configure_device(device: torch.device) -> None:
    """The GPU's fast paths: TF32 tensor cores for fp32 matmuls and convolutions (bf16
    autocast covers most of the step; TF32 covers what stays fp32), cuDNN's autotuner (every
    step has the same shapes)."""
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True


def make_optimizers(method: Method, lr: float, beta1: float, beta2: float,
                    fused: bool | None = None) -> dict[str, torch.optim.Optimizer]:
    """One Adam per optimiser group, with the paper's values (beta2 = 0.999: the paper prints
    Blocks' 1 - beta2). Fused Adam (one kernel for a whole group) on CUDA by default; on CPU
    fused Adam gained nothing measurable (README, "Performance")."""
    params = method.group_params()
    if fused is None:
        fused = next(iter(params.values()))[0].is_cuda
    return {g: torch.optim.Adam(p, lr=lr, betas=(beta1, beta2), fused=fused or None,
                                foreach=None if fused else True)
            for g, p in params.items()}


def compile_networks(method: Method, which: str = "on") -> list[str]:
    """torch.compile networks the method trains, in place (parameter names and the state dict
    stay those of the eager model); returns the names compiled. "all": every one. "on": all
    but the method's critics (a discriminator), which stay eager. A compiled network's
    backward is one graph that computes every gradient the network has; the eager step's
    `backward(inputs=...)` lets autograd skip those a pass does not want. The E/G loss's
    backward runs through D: compiled, D would also compute its weight gradients there only
    to drop them (README, "Performance", has the FLOPs and the timings). Either way the
    groups a loss differentiates twice (`Method.differentiated_twice`: D under R1) stay
    eager: torch.compile's autograd has no double backward."""
    if which not in ("on", "all"):
        raise ValueError(f"compile_networks: which must be 'on' or 'all', got {which!r}")
    eager = set(method.differentiated_twice()) | (set(method.critics) if which == "on" else set())
    names = []
    for group, modules in method.groups().items():
        if group in eager:
            continue
        for i, m in enumerate(modules):
            m.compile()
            names.append(f"{group}[{i}]:{type(m).__name__}")
    return names


def _uncompile(method: Method, reset: bool = False) -> None:
    for modules in method.groups().values():
        for m in modules:
            m._compiled_call_impl = None
    if reset:                    # after a failure: drop what the compiler cached
        torch._dynamo.reset()


def _is_compile_error(e: BaseException) -> bool:
    """Raised by the compiler (dynamo's tracing, inductor's code generation or its C++/Triton
    build), not by the model or the data: the frames it passed through say which."""
    tb, seen = e.__traceback__, 0
    while tb is not None and seen < 10_000:
        name = tb.tb_frame.f_code.co_filename
        if "torch/_dynamo/" in name or "torch/_inductor/" in name:
            return True
        tb, seen = tb.tb_next, seen + 1
    return False


class TrainStep:
    """`step(batch, stage, step)` runs every phase of `stage` once on a batch and returns the
    phases' detached metrics (later phases overwrite earlier ones of the same name), as
    device tensors.

    `ddp`: DDP options when a process group of several ranks is up (ignored otherwise).
    `channels_last`: keep the networks and batches in NHWC (cuDNN's fast layout on GPUs).
    `compile`: "off", or which networks are compiled ("on", "all": `compile_networks`); if
    compilation fails in the first step, the step says so once, goes back to eager and runs
    that step again (an alternating update's D phase may then have run twice in step 0,
    which nothing notices).
    """

    def __init__(self, method: Method, optimizers: dict[str, torch.optim.Optimizer],
                 device: torch.device, precision: str = "auto",
                 ddp: distributed.DDPOptions | None = None, channels_last: bool = False,
                 compile: str = "off"):
        self.method, self.opt, self.device = method, optimizers, device
        self.precision = resolve_precision(precision, device)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        self.autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else \
            contextlib.nullcontext
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self.params = method.group_params()
        self.ddp = (ddp or distributed.DDPOptions()) if distributed.is_distributed() else None
        self._wrappers: dict[str, dict] = {}    # stage name -> {group: DDP}
        self._trainable: dict[str, dict] = {}   # stage name -> {group: [params that train]}
        self.channels_last = channels_last
        if channels_last:
            method.to(memory_format=torch.channels_last)
        self.compiled = [] if compile == "off" else compile_networks(method, compile)
        self._first = True

    def _stage_setup(self, stage: Stage) -> tuple[dict, dict]:
        """The stage's trainable parameters per group and its DDP wrappers (made on the
        stage's first step, after `begin_stage` froze what the stage does not train)."""
        if stage.name not in self._trainable:
            groups = sorted({g for p in stage.phases for g in p.groups})
            self._trainable[stage.name] = {
                g: [p for p in self.params[g] if p.requires_grad] for g in groups}
            self._wrappers[stage.name] = {} if self.ddp is None else {
                g: distributed.wrap_group(self.method.groups()[g], self.ddp) for g in groups}
        return self._trainable[stage.name], self._wrappers[stage.name]

    def __call__(self, batch: Batch, stage: Stage, step: int) -> dict[str, torch.Tensor]:
        if not (self._first and self.compiled):
            return self._run(batch, stage, step)
        self._first = False
        try:
            return self._run(batch, stage, step)
        except Exception as e:  # noqa: BLE001 - a compiler failure: train eagerly instead
            if not _is_compile_error(e):
                raise
            print(f"[ali_dist] --compile: compiling failed ({type(e).__name__}: "
                  f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}); "
                  f"training without compilation", file=sys.__stdout__ or sys.stdout,
                  flush=True)
            _uncompile(self.method, reset=True)
            self.compiled = []
            return self._run(batch, stage, step)

    def uncompile(self) -> None:
        """The networks run eagerly from now on (the end of training)."""
        if self.compiled:
            _uncompile(self.method)
            self.compiled = []

    def eager(self):
        """A context in which the compiled networks run eagerly: evaluation calls them in
        eval mode at other batch sizes, which would otherwise compile them again."""
        return torch.compiler.set_stance("force_eager") if self.compiled else \
            contextlib.nullcontext()

    def _run(self, batch: Batch, stage: Stage, step: int) -> dict[str, torch.Tensor]:
        self.method.train()
        x = batch.x.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        batch = Batch(x, None if batch.y is None else batch.y.to(self.device, non_blocking=True),
                      batch.extra)
        trainable, wrappers = self._stage_setup(stage)
        ctx, metrics = {"step": step}, {}
        for phase in stage.phases:
            for g in phase.groups:
                self.opt[g].zero_grad(set_to_none=True)
            with self.autocast():
                group_losses, m = distributed.forward_through(
                    {g: wrappers[g] for g in phase.groups if g in wrappers},
                    lambda: self.method.loss(phase.name, batch, ctx))
            metrics.update(m)
            last = len(phase.groups) - 1
            for i, g in enumerate(phase.groups):
                self.scaler.scale(group_losses[g]).backward(inputs=trainable[g],
                                                            retain_graph=i < last)
            for g in phase.groups:
                self.scaler.step(self.opt[g])
            self.scaler.update()
        return metrics
