"""K independent trials of a method as ONE batched model (a prototype, measured by
`benchmarks/toy_step.py`; it stays here, beside the benchmark, because it did not pay): the K copies' parameters and buffers are stacked on a leading
trial axis (`torch.func.stack_module_state`) and the method's own `loss` runs once under
`torch.func.vmap` over that axis, so each trial keeps its own weights, batch-norm statistics,
noise and data while every matmul is one batched kernel for all K (the hope: small MLPs on
one core pay per-op overhead, which this divides by K). Measured on the toy (one Zen 4 core,
`benchmarks/results/toy_step_cpu.json`): no gain at K = 4, 16, 32. Its step is half matmuls
that already run near the core's sgemm rate, and vmap adds copies; bf16 autocast fails under
vmap (batch norm gets bf16 input with fp32 statistics).

It is a `Method`, so the one `TrainStep` trains it: groups "d" and "g" hold the stacked
parameters, the losses handed to the step are the trials' sums (trial k's parameters get
exactly the gradient of trial k's loss: the trials share no parameter). An Adam over stacked
parameters is K Adams: every element has its own moments and all trials take the same number
of steps (one learning rate for all K: a per-trial rate is not in this prototype).

Batch: x of shape (K, B, ...) (trial k's batch is x[k]). Metrics come back per trial, (K,).
Only single-phase updates ("joint", the simultaneous update): phases that share a step's
forward pass through `ctx` would carry batched tensors out of vmap.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ali_dist.methods.base import Batch, Method, Stage

_SEP = "/"     # parameter names as keys: nn.Module attribute names may not contain "."


def _holder(tensors: dict[str, torch.Tensor], params: bool) -> nn.Module:
    m = nn.Module()
    for name, t in tensors.items():
        key = name.replace(".", _SEP)
        if params:
            m.register_parameter(key, nn.Parameter(t))
        else:
            m.register_buffer(key, t)
    return m


class Batched(Method):
    def __init__(self, trials: list[Method]):
        first = trials[0]
        # `.model` is trial 0's model as built, a template: what trains is the stacked
        # copies (stack_module_state copies); `trial(k)` returns trial k's trained model.
        super().__init__(first.model)
        self.name, self.k = f"{first.name}x{len(trials)}", len(trials)
        if any(len(s.phases) != 1 for s in first.stages(1)):
            raise ValueError("a batched method trains single-phase updates only "
                             "(--update simultaneous)")
        # The template whose code runs under vmap: on the meta device, never a submodule
        # (its parameters are placeholders that functional_call replaces).
        self._template = (_Loss(copy.deepcopy(first).to("meta")),)
        params, buffers = stack_module_state([_Loss(t) for t in trials])
        groups = {"m." + n: g for g, mods in first.groups().items()
                  for mod in mods for n, _ in _named(first, mod)}
        self.d = _holder({n: p for n, p in params.items() if groups.get(n) == "d"}, True)
        self.g = _holder({n: p for n, p in params.items() if groups.get(n) == "g"}, True)
        self.bufs = _holder(buffers, False)
        self._vmapped = vmap(self._one, in_dims=(0, 0, 0, None, None),
                             randomness="different")     # each trial draws its own noise

    def groups(self):
        return {"d": [self.d], "g": [self.g]}

    def stages(self, total: int) -> list[Stage]:
        return self._template[0].m.stages(total)

    def _state(self) -> tuple[dict, dict]:
        params = {n.replace(_SEP, "."): p for part in (self.d, self.g)
                  for n, p in part.named_parameters()}
        buffers = {n.replace(_SEP, "."): b for n, b in self.bufs.named_buffers()}
        return params, buffers

    def _one(self, params, buffers, x, phase, step):
        """One trial: the method's own loss on its own weights and batch."""
        return functional_call(self._template[0], (params, buffers), (phase, x, step))

    def loss(self, phase: str, batch: Batch, ctx: dict):
        params, buffers = self._state()
        losses, metrics = self._vmapped(params, buffers, batch.x, phase, ctx["step"])
        return {g: l.sum() for g, l in losses.items()}, metrics

    def trial(self, k: int) -> nn.Module:
        """Trial k's model as an ordinary (unbatched) model, a copy: what evaluation reads."""
        model = copy.deepcopy(self.model)
        params, buffers = self._state()
        state = {n.removeprefix("m.model."): t[k].detach().clone()
                 for n, t in {**params, **buffers}.items()}
        model.load_state_dict(state)
        return model


class _Loss(nn.Module):
    """A method's loss as a module's forward (what functional_call calls), with a fresh ctx:
    one phase per step (see the module's docstring)."""

    def __init__(self, method: Method):
        super().__init__()
        self.m = method

    def forward(self, phase: str, x: torch.Tensor, step: int):
        return self.m.loss(phase, Batch(x), {"step": step})


def _named(root: nn.Module, mod: nn.Module):
    """`mod`'s parameters under their names in `root`."""
    ids = {id(p) for p in mod.parameters()}
    return [(n, p) for n, p in root.named_parameters() if id(p) in ids]
