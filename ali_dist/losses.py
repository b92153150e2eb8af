"""The adversarial losses, on discriminator logits (D(x, z) = sigmoid(logit)).

The paper's discriminator loss is -log D(x, E(x)) - log(1 - D(G(z), z)); the generator (encoder
and decoder together) minimises the swapped, non-saturating terms (paper eq. 4). With
-log sigmoid(l) = softplus(-l) and -log(1 - sigmoid(l)) = softplus(l) both stay finite.
"""
import torch
import torch.nn.functional as F


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """`real`: logits of encoder pairs (x, E(x)); `fake`: of decoder pairs (G(z), z)."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def generator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating: the encoder wants its pairs called fake, the decoder its pairs real."""
    return F.softplus(real).mean() + F.softplus(-fake).mean()


def discriminator_accuracy(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return ((real > 0).float().mean() + (fake < 0).float().mean()) / 2
