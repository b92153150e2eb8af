"""Which worker errors a restart cannot fix, and a trainer that does not retry them.

Ray Train's failure policy restarts the worker group after every worker error, up to
`--max-failures`. That is right for a lost node or a killed process, and wrong for bad input:
a truncated shard, an impossible setting or a missing file fails the same way on every
attempt, and each attempt repeats the same traceback. Those errors are our `DataError` and
`ValueError` (bad data, bad configuration) and `FileNotFoundError` (a missing path).

`TorchTrainer` here is Ray's, with a failure policy that raises at once when any worker failed
with one of them and otherwise decides as Ray's default policy does. Ray 2.60 offers no public
way to choose the policy; the one hook (`_initialize_and_run_controller`, which receives the
policy it passes to the controller) is checked at import, and without it Ray's default applies.
"""
from __future__ import annotations

import sys

import ray.cloudpickle
from ray.train.torch import TorchTrainer as _RayTorchTrainer
from ray.train.v2._internal.execution.failure_handling import DefaultFailurePolicy, FailureDecision

NOT_RETRYABLE = (ValueError, FileNotFoundError)   # DataError is a ValueError


def input_error(error: BaseException) -> BaseException | None:
    """The first worker error (by rank) of a failed run that no restart fixes, or None."""
    failures = getattr(error, "worker_failures", None) or {}
    for rank in sorted(failures):
        # Ray wraps each worker's exception with its traceback text; the original is inside
        exc = getattr(failures[rank], "_base_exc", failures[rank])
        if isinstance(exc, NOT_RETRYABLE):
            return exc
    return None


class InputErrorsStop(DefaultFailurePolicy):
    """Ray's default policy, except that bad input stops the run on its first occurrence."""

    def make_decision(self, training_failed_error) -> FailureDecision:
        if input_error(training_failed_error) is not None:
            return FailureDecision.RAISE
        return super().make_decision(training_failed_error)


class TorchTrainer(_RayTorchTrainer):
    def _initialize_and_run_controller(self, **controller_init_kwargs):
        controller_init_kwargs["failure_policy"] = InputErrorsStop(self.run_config.failure_config)
        return super()._initialize_and_run_controller(**controller_init_kwargs)


if not hasattr(_RayTorchTrainer, "_initialize_and_run_controller"):  # another Ray: its default
    TorchTrainer = _RayTorchTrainer  # noqa: F811

# The Train controller (a Ray actor) unpickles the policy, and may not see this package (a job
# without our working directory or PYTHONPATH): what this module defines travels by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
