"""Checkpoints and exported models on disk. Written atomically, read with weights_only=True.

A training checkpoint is a directory holding `state.pt`: models, optimisers, gradient scaler,
step, data position, every rank's RNG states and the config. An exported model (what
`--output` and `ali_dist.load` use) is a directory holding `config.json` and `weights.pt`.
"""
from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

import torch

STATE = "state.pt"
CONFIG = "config.json"
WEIGHTS = "weights.pt"


def _atomic_save(obj, path: Path) -> None:
    """Write to a temporary file in the same directory, then rename: a crash never leaves a
    file that looks whole."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_state(directory: Path, state: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_save(state, directory / STATE)
    return directory


def load_state(directory: str | Path, map_location="cpu") -> dict:
    path = Path(directory) / STATE
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint state at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which
        raise RuntimeError(f"checkpoint {path} cannot be read: {e}") from e


def export_model(directory: str | Path, model_state: dict, config: dict) -> Path:
    """What `ali_dist.load` reads: the run's config and the model's weights."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    _atomic_save(model_state, d / WEIGHTS)
    tmp = d / f".{CONFIG}.tmp"
    tmp.write_text(json.dumps(config, indent=2, sort_keys=True))
    os.replace(tmp, d / CONFIG)
    return d


def exported_dir(directory: str | Path) -> Path:
    """Where config.json + weights.pt are: the directory itself, or inside an MLflow model
    (a directory with an MLmodel file) the artifact its python_function flavour names."""
    d = Path(directory)
    if (d / "MLmodel").is_file() and not (d / WEIGHTS).is_file():
        import yaml
        flavor = (yaml.safe_load((d / "MLmodel").read_text()) or {}).get(
            "flavors", {}).get("python_function", {})
        for artifact in (flavor.get("artifacts") or {}).values():
            if (d / artifact["path"] / WEIGHTS).is_file():
                return d / artifact["path"]
    return d


def read_model_dir(directory: str | Path) -> tuple[dict, dict]:
    """(config, model state dict) from an exported model (also inside an MLflow model) or a
    training checkpoint."""
    d = exported_dir(directory)
    if (d / WEIGHTS).is_file() and (d / CONFIG).is_file():
        return (json.loads((d / CONFIG).read_text()),
                torch.load(d / WEIGHTS, map_location="cpu", weights_only=True))
    if (d / STATE).is_file():
        state = load_state(d)
        return state["config"], state["model"]
    raise FileNotFoundError(f"{d} holds no model: expected {CONFIG} + {WEIGHTS} (an exported "
                            f"model) or {STATE} (a training checkpoint)")
