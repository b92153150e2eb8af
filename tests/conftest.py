"""Shared fixtures: an isolated ALI_DIST_HOME/MLflow store per test, one real local Ray
cluster per test session (starting Ray costs 10-20 s on 2 cores), one real MLflow tracking
server on 127.0.0.1 for the tests that log to a server (it takes about 30 s to answer)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# One torch thread in the test process: the machines have 2 cores shared with Ray workers, and
# OpenMP threads spin-waiting on busy cores make small models 10-100x slower.
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def ali_home(tmp_path, monkeypatch):
    """A private home: the default SQLite MLflow store and data cache live under it."""
    from helpers import private_home
    home = tmp_path / "home"
    private_home(home, monkeypatch)
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def ray_cluster():
    """A real local Ray (4 logical CPUs on 2 cores), started once and reused by the tests
    that train; a test that needs its own cluster shuts it down and the next one restarts it."""
    from helpers import start_local_ray
    return start_local_ray()


@pytest.fixture(scope="session")
def mlflow_server():
    """The URL of a real `mlflow server` on 127.0.0.1 (SQLite store, proxied artifacts)."""
    import shutil
    import tempfile

    from ui_screenshots import TrackingServer
    server = TrackingServer(Path(tempfile.mkdtemp(prefix="mlfs", dir="/tmp"))).start()
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(server.work, ignore_errors=True)


def pytest_sessionfinish(session, exitstatus):
    import sys as _sys
    if "ray" in _sys.modules and _sys.modules["ray"].is_initialized():
        _sys.modules["ray"].shutdown()


sys.path.insert(0, str(REPO / "tests"))    # tests/helpers.py
sys.path.insert(0, str(REPO / "scripts"))  # scripts/ui_screenshots.py: the tracking server
