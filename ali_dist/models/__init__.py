"""Model code: pure PyTorch (no Ray, MLflow, DALI or file I/O)."""
from .ali import ALI, VARIANTS, build
from .tables import PRESETS, Preset, get_preset

__all__ = ["ALI", "VARIANTS", "build", "PRESETS", "Preset", "get_preset"]
