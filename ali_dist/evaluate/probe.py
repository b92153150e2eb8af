"""The paper's yardstick for learned features (section 4.3): a linear L2-SVM trained on a few
labelled examples, on the encoder's features.

Features, as the authors' released preprocessing computes them: the encoder's mean mu and the
outputs (after the non-linearity) of its last three hidden layers, flattened and concatenated,
with batch norm in inference mode. For Table 4's SVHN encoder that is 256 x 4 x 4 + 512 + 512
+ 256 = 5,376 dimensions. The paper prints 8,960 and cites Radford et al. (2015), who max-pool
every layer to a 4 x 4 grid; that pooling changes nothing here (those three layers are already
4 x 4 or 1 x 1), and no reading of Table 4 gives 8,960 (it would take two 4,096-wide layers:
8,960 = 2 x 4,096 + 512 + 256). We follow the code: `feature_dims` gives the number per preset.

HALI (README, "HALI"): features per level, by the same rule applied to the level's own
conditional. Level 1: q(z1 | x)'s last three hidden layers and mu1. Level 2: q(z2 | z1)'s last
three hidden layers and mu2, on mu1 (the means all the way up, as the probe reads means) -- for
hali-digits the same 1,312 dimensions as ALI's digits features. `probe_*` metrics are level
2's (the top latent, as ALI's z), `probe_z1_*` level 1's.

Protocol: N labelled examples drawn class-balanced from a pool of training images; C chosen
on a validation split from a log grid (mean error of a few draws); then the test error over
`draws` fresh label draws, reported as mean +- std (the paper: 1,000 labels, 100 draws).
Features are standardised with the pool's statistics, so one C grid serves every feature set
(the same SVM on raw pixels is the baseline the features must beat). scikit-learn's
`LinearSVC` is the L2-SVM (squared hinge, L2 penalty, one-vs-rest).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

C_GRID = tuple(10.0 ** k for k in range(-4, 2))    # 1e-4 ... 10
VALIDATION_DRAWS = 3                                 # draws averaged per C on validation
POOL_MAX = 10_000        # training images the labels are drawn from (the first ones in order)
TEST_MAX = 26_032        # test images scored (SVHN's whole test split)


@torch.no_grad()
def encoder_features(encoder: torch.nn.Module, x: torch.Tensor,
                     batch_size: int = 500) -> torch.Tensor:
    """(N, D) float32 on the CPU: mu and the last three hidden layers' outputs of `encoder`
    (an `ali_dist.models.networks.Encoder`: its `net` holds one block per table row, the last
    row the output layer), in eval mode."""
    was_training = encoder.training
    encoder.eval()
    rows = encoder.net
    if len(rows) < 4:
        raise ValueError(f"the encoder has {len(rows) - 1} hidden layer(s); the probe takes "
                         f"the last three")
    captured: list[torch.Tensor] = []
    hooks = [rows[i].register_forward_hook(lambda _m, _i, out: captured.append(out.flatten(1)))
             for i in (-4, -3, -2)]
    device = next(encoder.parameters()).device
    out = []
    try:
        for i in range(0, len(x), batch_size):
            captured.clear()
            mu, _ = encoder.moments(x[i:i + batch_size].to(device))
            out.append(torch.cat(captured + [mu.flatten(1)], 1).float().cpu())
    finally:
        for h in hooks:
            h.remove()
        encoder.train(was_training)
    return torch.cat(out)


@torch.no_grad()
def model_features(model, x: torch.Tensor, level: int | None = None,
                   batch_size: int = 500) -> torch.Tensor:
    """The probe's features of a model: its encoder's (ALI), or those of HALI's `level`
    (default 2): q(z1 | x)'s at level 1, q(z2 | z1)'s on mu1 at level 2."""
    if not model.is_hierarchical:
        return encoder_features(model.encoder, x, batch_size)
    enc = model.encoder
    if (level or 2) == 1:
        return encoder_features(enc.q_z1, x, batch_size)
    was_training = enc.training
    enc.eval()
    device = next(enc.parameters()).device
    try:
        mu1 = torch.cat([enc.q_z1(x[i:i + batch_size].to(device), sample=False)
                         for i in range(0, len(x), batch_size)])
    finally:
        enc.train(was_training)
    return encoder_features(enc.q_z2, mu1, batch_size)


def feature_dims(model, level: int | None = None) -> int:
    """How many features `model_features` gives (one image's worth)."""
    p = model.preset
    x = torch.zeros(2, p.channels, p.image_size, p.image_size)
    return model_features(model, x, level).shape[1]


def balanced_draw(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of n examples, the same number of each class (n must be a multiple of the class
    count and every class must have enough examples)."""
    classes = np.unique(labels)
    if n % len(classes):
        raise ValueError(f"{n} labels cannot be split evenly over {len(classes)} classes")
    per = n // len(classes)
    picked = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        if len(idx) < per:
            raise ValueError(f"class {c} has {len(idx)} examples in the probe's pool, fewer than "
                             f"the {per} a class-balanced draw of {n} labels needs")
        picked.append(rng.choice(idx, per, replace=False))
    return np.concatenate(picked)


@dataclass
class ProbeResult:
    error_mean: float        # test error, share of the test set
    error_std: float
    C: float                 # chosen on the validation split
    n_labels: int
    draws: int
    dims: int

    def as_metrics(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_error": self.error_mean, f"{prefix}_error_std": self.error_std,
                f"{prefix}_C": self.C, f"{prefix}_dims": float(self.dims)}


def svm_probe(pool: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
              test: tuple[np.ndarray, np.ndarray], n_labels: int, draws: int = 100,
              seed: int = 0, c_grid=C_GRID) -> ProbeResult:
    """The L2-SVM protocol on precomputed features: (features, labels) for the labelled pool,
    the validation split (chooses C) and the test split."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    (xp, yp), (xv, yv), (xt, yt) = pool, val, test
    mean, std = xp.mean(0), xp.std(0)
    std[std < 1e-6] = 1.0                       # a constant feature stays as it is
    xp, xv, xt = ((a - mean) / std for a in (xp, xv, xt))
    rng = np.random.default_rng(seed)

    def error(c: float, idx: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            svm = LinearSVC(C=c, max_iter=5000).fit(xp[idx], yp[idx])
        return float(np.mean(svm.predict(x) != y))

    val_draws = [balanced_draw(yp, n_labels, rng) for _ in range(VALIDATION_DRAWS)]
    val_err = {c: np.mean([error(c, idx, xv, yv) for idx in val_draws]) for c in c_grid}
    best_c = min(val_err, key=val_err.get)
    errs = [error(best_c, balanced_draw(yp, n_labels, rng), xt, yt) for _ in range(draws)]
    return ProbeResult(float(np.mean(errs)), float(np.std(errs)), best_c, n_labels, draws,
                       xp.shape[1])


@torch.no_grad()
def untrained_encoder(model, init_std: float | None = None, seed: int = 0,
                      images: torch.Tensor | None = None, batch_size: int = 500):
    """A model of the same preset, initialised and never trained: the features the trained
    encoder's must beat by more than the architecture alone does. Its batch-norm statistics
    are measured on `images` (the labelled pool): at their initial values (mean 0, variance
    1) every layer of N(0, 0.01) weights shrinks its input, and after a few layers the
    features are constants to the probe."""
    from ..models import ALI, HALI
    with torch.random.fork_rng(devices=[]):      # the caller's random stream stays as it was
        torch.manual_seed(seed)
        fresh = HALI(model.preset, init_std=init_std) if model.is_hierarchical else \
            ALI(model.preset, discriminator=None, init_std=init_std)
        fresh = fresh.to(next(model.parameters()).device)
        if images is not None:
            norms = [m for m in fresh.encoder.modules()
                     if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
            for bn in norms:
                bn.reset_running_stats()
                bn.momentum = None                   # a cumulative average over the batches
            fresh.encoder.train()
            for i in range(0, len(images), batch_size):
                fresh.encoder(images[i:i + batch_size].to(fresh._device), sample=False)
    return fresh.eval()


def probe_model(model, loader, n_labels: int, draws: int = 100, seed: int = 0,
                init_std: float | None = None) -> dict:
    """The protocol for a model and its run's data: labels drawn from the training split, C
    chosen on the `val` split (or on the pool's last fifth when `val` is the test split), the
    error on the `test` split (else `val`). Returns metrics for the encoder's features
    (`probe_*`; HALI: level 2's, and level 1's as `probe_z1_*`), for raw pixels
    (`probe_pixels_*`) and for an untrained encoder of the same architecture
    (`probe_untrained_*`, drawn with `init_std`): the baselines they must beat."""
    test_name = "test" if loader.split("test") is not None else "val"
    xp, yp = loader.labelled("train", POOL_MAX)
    xt, yt = loader.labelled(test_name, TEST_MAX)
    if yp is None or yp.dim() != 1:
        raise ValueError("the L2-SVM probe needs class labels (.cls); this data has none")
    if test_name == "test" and loader.split("val") is not None:
        xv, yv = loader.labelled("val", POOL_MAX)
        xp_, yp_ = xp, yp
    else:                               # carve the validation split out of the pool
        cut = len(xp) * 4 // 5
        xp_, yp_, xv, yv = xp[:cut], yp[:cut], xp[cut:], yp[cut:]
    untrained = untrained_encoder(model, init_std, seed, images=xp_)
    sets = [("probe", lambda x: model_features(model, x))]
    if model.is_hierarchical:
        sets.append(("probe_z1", lambda x: model_features(model, x, level=1)))
    sets += [("probe_pixels", lambda x: x.flatten(1).float().cpu()),
             ("probe_untrained", lambda x: model_features(untrained, x))]
    out = {}
    for prefix, feats in sets:
        r = svm_probe((feats(xp_).numpy(), yp_.numpy()), (feats(xv).numpy(), yv.numpy()),
                      (feats(xt).numpy(), yt.numpy()), n_labels, draws, seed)
        out.update(r.as_metrics(prefix))
    out["probe_labels"] = float(n_labels)
    return out


def describe(m: dict) -> str:
    """One console line for `probe_model`'s metrics."""
    pct = lambda p: f"{100 * m[p + '_error']:.1f} ± {100 * m[p + '_error_std']:.1f} %"
    z1 = f", z1 features {pct('probe_z1')} ({int(m['probe_z1_dims'])} dims)" \
        if "probe_z1_error" in m else ""
    what = "z2 features" if z1 else "encoder features"
    untrained = f", an untrained encoder {pct('probe_untrained')}" \
        if "probe_untrained_error" in m else ""
    return (f"L2-SVM probe, {int(m['probe_labels'])} labels: {what} {pct('probe')} test error "
            f"({int(m['probe_dims'])} dims){z1}, raw pixels {pct('probe_pixels')}{untrained}")
