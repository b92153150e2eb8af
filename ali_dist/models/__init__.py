"""Model code: pure PyTorch (no Ray, MLflow, DALI or file I/O)."""
from .ali import ALI
from .tables import PRESETS, Preset, get_preset

__all__ = ["ALI", "PRESETS", "Preset", "get_preset"]
