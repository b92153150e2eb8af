"""ali-dist: Adversarially Learned Inference (ALI/BiGAN) trained at scale.

    import ali_dist
    model = ali_dist.build("celeba64")            # untrained: .encoder .decoder .discriminator
    model = ali_dist.load("runs:/<id>/model")     # trained: encode, decode, reconstruct, sample
"""
from .api import build, load
from .models import ALI, PRESETS

__version__ = "0.1.0"
__all__ = ["ALI", "PRESETS", "build", "load", "__version__"]
