"""Mode coverage on the 25-Gaussian grid, by both definitions in use.

`paper_modes`: ALI's (section 4.5): 10,000 samples, each assigned to the component with the
largest responsibility; a mode is dropped if no sample is assigned to it.
`strict_modes`: VEEGAN's and PacGAN's: 2,500 samples; a sample is high quality if within 3 sigma
of its nearest mean; a mode is covered if it holds a high-quality sample; also the share of
high-quality samples and the reverse KL of the high-quality mode histogram to uniform.
"""
from __future__ import annotations

import math

import torch

from ..data import toy

PAPER_SAMPLES = 10_000
STRICT_SAMPLES = 2_500


def responsibilities(x: torch.Tensor) -> torch.Tensor:
    """Posterior over the 25 components for each point (equal weights, isotropic STD)."""
    d2 = torch.cdist(x.double(), toy.means().double()) ** 2
    return torch.softmax(-d2 / (2 * toy.STD ** 2), dim=1)


def paper_modes(x: torch.Tensor) -> int:
    assigned = responsibilities(x).argmax(dim=1)
    return int(torch.bincount(assigned, minlength=25).gt(0).sum())


def strict_modes(x: torch.Tensor) -> dict[str, float]:
    dist, nearest = torch.cdist(x.double(), toy.means().double()).min(dim=1)
    hq = dist <= 3 * toy.STD
    counts = torch.bincount(nearest[hq], minlength=25).double()
    n_hq = counts.sum().item()
    if n_hq > 0:
        p = counts / n_hq
        nz = p > 0
        rkl = float((p[nz] * (p[nz] * 25).log()).sum())
    else:
        rkl = math.log(25)  # an empty histogram: as far from uniform as one mode alone
    return {"modes": int(counts.gt(0).sum()), "high_quality": n_hq / len(x), "reverse_kl": rkl}


@torch.no_grad()
def mode_metrics(decode, generator: torch.Generator | None = None,
                 z_dim: int = 2, device=None) -> dict[str, float]:
    """Both counts for a decoder `decode(z)`; metric names as logged to MLflow."""
    z = torch.randn(PAPER_SAMPLES, z_dim, generator=generator).to(device or "cpu")
    x_paper = decode(z).float().cpu()
    z = torch.randn(STRICT_SAMPLES, z_dim, generator=generator).to(device or "cpu")
    strict = strict_modes(decode(z).float().cpu())
    return {"modes_paper": paper_modes(x_paper), "modes_strict": strict["modes"],
            "high_quality": strict["high_quality"], "reverse_kl": strict["reverse_kl"]}
