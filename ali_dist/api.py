"""What users call: `build` an untrained model, `load` a trained one. CPU-ready, no Ray."""
from __future__ import annotations

from pathlib import Path

import torch

from . import checkpoint
from .methods import build_model


def build(preset: str = "toy", method: str = "ali", init_std: float | None = None,
          conditional: bool = False, y_dim: int | None = None):
    """An untrained model: the networks `method` trains for `preset` (see
    `ali_dist.models.tables.PRESETS` and `ali_dist.methods.METHODS`): an `ALI`, or a `HALI`
    for the hierarchical hali-* presets. `conditional=True`: conditional ALI/HALI (paper
    eq. 7), reading y of `y_dim` classes or attributes (default: the preset's). The networks
    are the preset's table: what training changes on top (`--z-dim`, `--d-dropout`, the digits
    game's own values in `tables.ali_game`) are `methods.build_model`'s arguments."""
    return build_model(method, preset, init_std, conditional, y_dim)


def load(path_or_uri: str | Path, device: str | torch.device = "cpu"):
    """A trained model in eval mode, from
    - a training run's `--output` directory (config.json + weights.pt),
    - a Ray training checkpoint directory (state.pt), or
    - an MLflow URI such as `runs:/<run_id>/model` (downloaded first).
    Then: `encode(x, sample=True)`, `decode(z)`, `reconstruct(x)`, `sample(n)` (HALI: with
    `level=1|2`; a conditional model: with y)."""
    src = str(path_or_uri)
    if "://" in src or src.startswith("runs:/") or src.startswith("models:/"):
        from . import tracking
        directory = tracking.download(src)
    else:
        directory = Path(src).expanduser()
        if not directory.exists():
            raise FileNotFoundError(f"no model at {directory}")
    cfg, state = checkpoint.read_model_dir(directory)
    m = cfg["model"]
    method = m.get("method", m.get("variant"))       # configs saved before --method
    model = build_model(method, m["preset"], m.get("init_std"), bool(m.get("conditional")),
                        m.get("y_dim"), m.get("classes"), m.get("d_dropout"), m.get("z_dim"),
                        m.get("encoder_noise"), m.get("d_pack"))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise RuntimeError(f"{directory}: weights do not match preset {m['preset']!r} "
                           f"({method}): {e}") from None
    return model.to(device).eval()


__all__ = ["build", "load"]
