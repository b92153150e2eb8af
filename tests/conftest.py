"""Shared fixtures: an isolated ALI_DIST_HOME/MLflow store per test, one real local Ray
cluster per test session (starting Ray costs 10-20 s on 2 cores)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def ali_home(tmp_path, monkeypatch):
    """A private home: the default SQLite MLflow store and data cache live under it."""
    home = tmp_path / "home"
    monkeypatch.setenv("ALI_DIST_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    import ali_dist.tracking as tracking
    monkeypatch.setattr(tracking, "DEFAULT_HOME", home)
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray (loopback only, no dashboard), shared by the tests that train."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "120")
    ray.init(num_cpus=4, include_dashboard=True, dashboard_host="127.0.0.1",
             _node_ip_address="127.0.0.1",
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}}, log_to_driver=True)
    yield ray
    ray.shutdown()


sys.path.insert(0, str(REPO / "tests"))  # tests/helpers.py
