"""Semi-supervised ALI with a K+1 discriminator (paper section 4.3, after Salimans et al. 2016),
and the baseline it must beat: the same discriminator trained on the labels alone.

kplus1      D(x, z) gives K + 1 logits (`models/kplus1.py`). Its loss:
              labelled encoder pairs (x_l, E(x_l))  -> their class       (cross-entropy
                                                    over the K class logits: Salimans et
                                                    al.'s log p(y | x, y < K + 1))
              unlabelled encoder pairs (x, E(x))    -> any of the K classes
              decoder pairs (G(z), z)               -> class K + 1
            The last two are ALI's game on the real-vs-fake logit logsumexp(l_1..K) - l_K+1,
            so this is `Adversarial` with D's loss plus the labelled cross-entropy; the encoder
            and decoder play the usual non-saturating game (no feature matching: the paper's
            choice). The labelled pairs go through D in the same pass as the game's pairs, so
            D's batch norm sees one batch.
classifier  D(x, z) trained with the labelled cross-entropy alone, on the pairs (x, mu(x)) of
            the untrained encoder (what `classify` feeds it at test time): the same network,
            the same labels, no unlabelled data.

The labelled subset: `labels` training images drawn class-balanced with `label_seed` from the
first `probe.POOL_MAX` training images (the L2-SVM probe's pool), the same on every rank and on
resume. Each step draws a labelled minibatch of the batch size from it, with replacement.
The unlabelled stream is the whole training split, as in Salimans et al.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..models.kplus1 import real_logit
from .adversarial import Adversarial
from .base import Batch, Method, Phase, Stage


class LabelledSubset:
    """The class-balanced labelled images a run trains on, and minibatches drawn from it."""

    def __init__(self, labels: int, seed: int):
        self.n, self.seed = labels, seed
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None

    def read(self, loader) -> None:
        from ..evaluate.probe import POOL_MAX, balanced_draw
        x, y = loader.labelled("train", POOL_MAX)
        if y is None or y.dim() != 1:
            raise ValueError("K+1 training needs class labels (.cls) in the training data")
        idx = balanced_draw(y.numpy(), self.n, np.random.default_rng(self.seed))
        self.x, self.y = x[torch.from_numpy(idx).to(x.device)], y[idx].to(x.device)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.x is None:
            raise RuntimeError("the labelled subset was not read: call the method's "
                               "prepare(loader) before training")
        idx = torch.randint(len(self.x), (size,)).to(self.x.device)
        return self.x[idx], self.y[idx]


def data_classes(data_cfg) -> int:
    """K: the class count the training data's manifest lists."""
    from ..data.shards import TRAIN, resolve
    shards = resolve(data_cfg.data, TRAIN)
    if not shards.classes:
        raise ValueError(f"{data_cfg.data}: no class list (a manifest with classes); pass "
                         f"--classes K")
    return len(shards.classes)


class KPlus1(Adversarial):
    name = "kplus1"

    def __init__(self, model, labels: int, label_seed: int = 0, **game):
        super().__init__(model, **game)
        self.subset = LabelledSubset(labels, label_seed)

    def prepare(self, loader) -> None:
        self.subset.read(loader)

    def labelled(self, x: torch.Tensor, ctx: dict):
        """This step's labelled minibatch and its encoder codes (sampled, as the game's are;
        no gradient: the labels train D only), shared by the step's phases."""
        if "labelled" not in ctx:
            x_l, y_l = self.subset.batch(len(x))
            x_l = x_l.to(x.dtype)
            with torch.no_grad():
                z_l = self.model.inference(x_l)[0]
            ctx["labelled"] = (x_l, y_l, z_l.to(x.dtype))
        return ctx["labelled"]

    def logits(self, x, ctx: dict, detach: bool, penalty: bool, y=None):   # never conditional
        """As `Adversarial.logits`, with the labelled pairs in the same D pass; their K + 1
        logits wait in ctx for the cross-entropy."""
        x_fake, lat_p, lat_q = self.generated(x, ctx)
        x_l, y_l, z_l = self.labelled(x, ctx)
        if detach:
            x_fake, lat_p, lat_q = x_fake.detach(), [v.detach() for v in lat_p], \
                [v.detach() for v in lat_q]
        if penalty:
            x = x.detach().requires_grad_(True)
        n, m = len(x), len(x_l)
        out = self.model.class_logits(torch.cat([x, x_l, x_fake]),
                                      [torch.cat([lat_q[0], z_l, lat_p[0]])]).float()
        ctx["class_logits"] = (out[n:n + m], y_l)
        real, fake = real_logit(out[:n]), real_logit(out[n + m:])
        if not penalty:
            return real, fake, None
        (grad,) = torch.autograd.grad(real.sum(), [x], create_graph=True)
        return real, fake, grad.float().flatten(1).pow(2).sum(1).mean()

    def loss(self, phase: str, batch: Batch, ctx: dict):
        group_losses, metrics = super().loss(phase, batch, ctx)
        if "d" in group_losses:         # the phases that train D add the labelled term
            logits, y = ctx["class_logits"]
            ce = F.cross_entropy(logits[:, :-1], y)     # log p(y | x, z, not a decoder pair)
            group_losses["d"] = group_losses["d"] + ce
            metrics.update(supervised_metrics(logits[:, :-1], y, ce))
        return group_losses, metrics


class LabelsOnly(Method):
    """The baseline: K+1's discriminator trained as a plain classifier on the labelled subset."""
    name = "classifier"

    def __init__(self, model, labels: int, label_seed: int = 0):
        super().__init__(model)
        self.subset = LabelledSubset(labels, label_seed)
        self.model.encoder.requires_grad_(False)       # stays as initialised

    def prepare(self, loader) -> None:
        self.subset.read(loader)

    def groups(self):
        return {"d": [self.model.discriminator]}

    def stages(self, total: int) -> list[Stage]:
        return [Stage("train", total, (Phase("supervised", ("d",)),))]

    def loss(self, phase: str, batch: Batch, ctx: dict):
        x_l, y_l = self.subset.batch(len(batch.x))
        x_l = x_l.to(batch.x.dtype)
        m = self.model
        with torch.no_grad():
            m.encoder.eval()                 # the codes classify() gives it at test time
            z_l = m.encoder(x_l, sample=False)
            m.encoder.train()
        logits = m.class_logits(x_l, [z_l]).float()[:, :m.classes]
        ce = F.cross_entropy(logits, y_l)
        return {"d": ce}, supervised_metrics(logits, y_l, ce)


def supervised_metrics(logits: torch.Tensor, y: torch.Tensor, ce: torch.Tensor) -> dict:
    """The labelled minibatch's cross-entropy and the share whose largest logit is its class."""
    return {"loss_sup": ce.detach(), "sup_acc": (logits.argmax(1) == y).float().mean().detach()}
