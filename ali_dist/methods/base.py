"""What every training method declares, and nothing more: the one `TrainStep` (`step.py`) and
the one loop (`loop.py`) drive any method through this interface, so every method gets data
parallelism, precision, checkpoints and resume, divergence handling, MLflow and Tune.

A method is an `nn.Module` holding every network it trains; `.model` is the part users keep
(an `ali_dist.models` model with the inference API), exported at the end of a run.

    groups()        optimiser groups: name -> the modules one Adam updates
    critics         the groups that other groups' losses backpropagate through without
                    training them (a discriminator); `--compile on` leaves them eager
    differentiated_twice()  the groups a loss differentiates twice (R1's gradient penalty:
                    D); torch.compile's autograd cannot, so they are never compiled
    stages(total)   the run as consecutive stages (most methods have one; the two-stage
                    baselines train a GAN, then an encoder), each a number of steps and the
                    phases every step of it runs
    loss(phase, batch, ctx) -> ({group: loss}, metrics)
                    what a phase computes; `ctx` is shared by the phases of one step (a
                    phase may reuse what an earlier one computed)
    begin_stage(stage)   called when a stage starts (freeze what it must not train)
    prepare(loader)      called once before training with the run's loader (a method that
                         reads data beyond its batches, such as a labelled subset, reads it)

A phase names the groups its losses update. Within a phase every group's loss is taken from
the same forward pass, each backpropagated into its own group's parameters only: ALI's
simultaneous update is one phase with two groups, its alternating update two phases.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class Phase:
    name: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class Stage:
    name: str
    steps: int
    phases: tuple[Phase, ...]


@dataclass
class Batch:
    """One training batch: images (or toy points) and, where the data has them, labels."""
    x: torch.Tensor
    y: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)


class Method(nn.Module):
    name: str = "?"
    critics: tuple[str, ...] = ()

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def groups(self) -> dict[str, list[nn.Module]]:
        raise NotImplementedError

    def stages(self, total: int) -> list[Stage]:
        raise NotImplementedError

    def loss(self, phase: str, batch: Batch, ctx: dict) -> tuple[dict, dict]:
        raise NotImplementedError

    def differentiated_twice(self) -> tuple[str, ...]:
        return ()

    def begin_stage(self, stage: Stage) -> None:
        pass

    def prepare(self, loader) -> None:
        pass

    # --- derived, the same for every method ---
    def group_params(self) -> dict[str, list[nn.Parameter]]:
        return {g: [p for m in mods for p in m.parameters()] for g, mods in self.groups().items()}

    def total_steps(self, budget: int) -> int:
        return sum(s.steps for s in self.stages(budget))

    def stage_at(self, step: int, budget: int) -> tuple[Stage, int]:
        """The stage that step `step` (0-based) belongs to, and the step within it."""
        start = 0
        for s in self.stages(budget):
            if step < start + s.steps:
                return s, step - start
            start += s.steps
        raise IndexError(f"step {step} is past the method's {start} steps")


def two_stage(budget: int, share: float = 0.5) -> tuple[int, int]:
    """(first stage, second stage) steps of a two-stage baseline: the trial's budget for the
    GAN, then `share` of it more for the encoder, which learns against a fixed decoder."""
    return budget, max(1, math.ceil(share * budget))
