"""ALI whose discriminator is also a classifier: D(x, z) gives K + 1 logits, one per class of
the data and one for "a decoder pair" (paper section 4.3, after Salimans et al. 2016). The
model is an `ALI` in every other way (encode, decode, reconstruct, sample), and adds
`classify(x)`: the class of x as D sees the pair (x, E(x)).

D's real-vs-fake logit, what the adversarial game plays on, follows from the K + 1 logits:
p(real) = sum of the K class probabilities, so logit(real) = logsumexp(l_1..l_K) - l_{K+1}.
"""
from __future__ import annotations

import torch

from .ali import ALI
from .networks import Discriminator, init_weights


class KPlus1ALI(ALI):
    def __init__(self, preset, classes: int, init_std: float | None = None,
                 name: str = "kplus1", **kw):
        if classes < 2:
            raise ValueError(f"a K+1 discriminator needs at least 2 classes, got {classes}")
        super().__init__(preset, encoder=True, discriminator="joint", init_std=init_std,
                         name=name, **kw)
        self.classes = classes
        self.discriminator = Discriminator(self.preset, joint=True, outputs=classes + 1)
        init_weights(self.discriminator,
                     self.preset.init_std if init_std is None else init_std)

    def class_logits(self, x: torch.Tensor, latents: list[torch.Tensor]) -> torch.Tensor:
        """D's K + 1 logits for pairs (x, latents), (B, K + 1); the last is "decoder pair"."""
        return self.discriminator(x, latents[0])

    def criticise(self, x: torch.Tensor, latents: list[torch.Tensor], *args) -> torch.Tensor:
        """The real-vs-fake logit the adversarial game plays on (see the module docstring)."""
        return real_logit(self.class_logits(x, latents))

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, K) of x: D on the pair (x, E(x)) with the encoder's mean, the
        fake class left out. Eval mode, like the rest of the inference API."""
        x = x.to(self._device)
        return self.class_logits(x, [self.encoder(x, sample=False)])[:, :self.classes]


def real_logit(logits: torch.Tensor) -> torch.Tensor:
    """logit p(one of the K classes) from K + 1 logits: logsumexp(l_1..l_K) - l_{K+1}."""
    return torch.logsumexp(logits[:, :-1], dim=1) - logits[:, -1]
