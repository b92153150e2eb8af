"""HALI's table for attribute data (CelebA's 40 binary attributes): a classifier trained on
real training images predicts the attributes of held-out images and of their reconstructions;
the closer the reconstructions' accuracy comes to the real images', the more of what the
attributes describe inference keeps. Per latent level for HALI (z1, z2).

The classifier is a small conv net (stride-2 convolutions with batch norm down to 4 x 4, then
one linear layer, a logit per attribute) trained with binary cross-entropy; it is trained once
per loader and kept, so periodic evaluation during training pays for it once. Accuracy is the
mean over attributes of the share of images whose attribute it gets right.
"""
from __future__ import annotations

import math
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from . import hooks

STEPS, BATCH, LR = 2000, 64, 1e-3
POOL, TEST = 10_000, 10_000       # training images it learns from, held-out images scored


def classifier(channels: int, size: int, outputs: int) -> nn.Module:
    layers, width = [], channels
    for i in range(max(1, int(math.log2(size // 4)))):
        out = min(256, 32 * 2 ** i)
        layers += [nn.Conv2d(width, out, 4, 2, 1), nn.BatchNorm2d(out), nn.LeakyReLU(0.2)]
        width = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                         nn.Linear(width * 16, outputs))


def train_classifier(x: torch.Tensor, attrs: torch.Tensor, steps: int = STEPS,
                     seed: int = 0) -> nn.Module:
    """A classifier of binary attributes (N, A) of images x (N, C, H, W) in [0, 1]."""
    with torch.random.fork_rng(devices=[]):        # the caller's random stream stays as it was
        torch.manual_seed(seed)
        net = classifier(x.shape[1], x.shape[-1], attrs.shape[1]).to(x.device)
        opt = torch.optim.Adam(net.parameters(), lr=LR)
        target = attrs.float().to(x.device)
        net.train()
        for _ in range(steps):
            idx = torch.randint(len(x), (min(BATCH, len(x)),))
            loss = F.binary_cross_entropy_with_logits(net(x[idx.to(x.device)]),
                                                      target[idx.to(x.device)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: nn.Module, x: torch.Tensor, attrs: torch.Tensor) -> float:
    pred = torch.cat([net(x[i:i + 500]) > 0 for i in range(0, len(x), 500)])
    return float((pred.cpu() == attrs.bool().cpu()).float().mean())


_trained: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def attribute_accuracy(model, loader, steps: int = STEPS) -> dict[str, float]:
    """`attr_acc_real` on held-out images (test split, else val), and `attr_acc_recon` (HALI:
    `attr_acc_recon_z1`, `_z2`) on their reconstructions."""
    key = steps
    if key not in _trained.setdefault(loader, {}):
        x, a = loader.labelled("train", POOL)
        if a is None or a.dim() != 2:
            raise ValueError("the attribute table needs binary attributes (.attr)")
        _trained[loader][key] = train_classifier(x, a, steps)
    net = _trained[loader][key]
    split = "test" if loader.split("test") is not None else "val"
    xt, at = loader.labelled(split, TEST)
    was_training = model.training
    model.eval()
    try:
        out = {"attr_acc_real": accuracy(net, xt, at)}
        for level in hooks.levels(model):
            rec = torch.cat([hooks.reconstruct(model, xt[i:i + 500], at[i:i + 500], level).to(xt)
                             for i in range(0, len(xt), 500)])
            out[f"attr_acc_recon{hooks.level_suffix(level)}"] = accuracy(net, rec, at)
    finally:
        model.train(was_training)
    return out
