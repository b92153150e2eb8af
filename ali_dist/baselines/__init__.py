"""The baselines of the paper's Figure 8 (section 4.5): other ways to get an encoder for a GAN,
and a VAE, each with ALI's encoder and decoder so that only the training method differs.

    gan_inverse   a GAN, then an encoder fitted to invert its frozen decoder:
                  minimise ||z - E(G(z))||^2 over z ~ p(z)                       (inverse.py)
    gan_posthoc   a GAN, then its decoder frozen and an encoder plus a fresh joint
                  discriminator D(x, z) trained by the ALI game                  (posthoc.py)
    vae           encoder and decoder trained by the evidence lower bound, with a
                  Gaussian decoder likelihood of fixed variance                  (vae.py)

Each method trains through `method(x, step)`, lists its `phases` as (name, steps, optimisers)
(the training loop runs the learning-rate schedule over each phase), and exposes `.model`, an
`ALI` module with an encoder and a decoder, so evaluation, figures and the inference API treat
every model alike.
`run.run` is their training loop (`ali_dist.loop.run` trains ALI and GAN).
"""
from .inverse import InverseMapping
from .posthoc import PostHocInference
from .vae import VAE

BASELINES = {m.name: m for m in (InverseMapping, PostHocInference, VAE)}

__all__ = ["BASELINES", "InverseMapping", "PostHocInference", "VAE"]
