"""ali-dist: Adversarially Learned Inference (ALI/BiGAN) trained at scale.

    import ali_dist
    model = ali_dist.build("celeba64")            # untrained: .encoder .decoder .discriminator
    model = ali_dist.load("runs:/<id>/model")     # trained: encode, decode, reconstruct, sample
"""
__version__ = "0.1.0"
__all__ = ["ALI", "PRESETS", "build", "load", "__version__"]


def __getattr__(name):
    # Lazy: `ali_dist.data.format` and `--help` should not pay for importing torch.
    if name in ("build", "load"):
        from . import api
        return getattr(api, name)
    if name in ("ALI", "PRESETS"):
        from . import models
        return getattr(models, name)
    raise AttributeError(f"module 'ali_dist' has no attribute {name!r}")
