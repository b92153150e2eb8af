"""Model code: pure PyTorch (no Ray, MLflow, DALI or file I/O)."""
from .ali import ALI
from .hali import HALI
from .tables import PRESETS, Preset, get_preset

__all__ = ["ALI", "HALI", "PRESETS", "Preset", "get_preset"]
