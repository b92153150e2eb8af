"""Helpers shared by test files (fixtures live in conftest.py)."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def start_local_ray():
    """One real local Ray per test process (4 logical CPUs on 2 cores), reused until a test
    that needs its own cluster shuts it down."""
    import ray
    if not ray.is_initialized():
        os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "120")
        ray.init(num_cpus=4, include_dashboard=True, dashboard_host="127.0.0.1",
                 runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}}, log_to_driver=True)
    return ray


def private_home(home: Path, mp=None):
    """ALI_DIST_HOME (the default SQLite MLflow store and data cache) at `home`, through `mp`
    (a test's monkeypatch) or a new MonkeyPatch that a module-scoped fixture undoes itself."""
    import pytest

    import ali_dist.tracking as tracking
    mp = mp or pytest.MonkeyPatch()
    mp.setenv("ALI_DIST_HOME", str(home))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.setattr(tracking, "DEFAULT_HOME", home)
    return mp


def run_train(argv: list[str]) -> dict:
    """The CLI's path in-process: flags -> resolved config -> train()."""
    from ali_dist import config as config_lib
    from ali_dist.train import build_parser, train
    args = build_parser().parse_args(argv)
    return train(config_lib.resolve(config_lib.from_args(args)))
