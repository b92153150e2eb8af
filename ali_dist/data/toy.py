"""The toy study's data (paper section 4.5): 25 Gaussians on a grid, in memory."""
from __future__ import annotations

import torch

GRID = (-4.0, -2.0, 0.0, 2.0, 4.0)
STD = 0.05
TRAIN_SIZE = 100_000


def means() -> torch.Tensor:
    """The 25 component means, (25, 2), row-major over the grid {-4, -2, 0, 2, 4}^2."""
    g = torch.tensor(GRID)
    return torch.cartesian_prod(g, g)


def sample(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n points from the equal-weight mixture."""
    mu = means()
    idx = torch.randint(len(mu), (n,), generator=generator)
    return mu[idx] + STD * torch.randn(n, 2, generator=generator)


def dataset(n: int = TRAIN_SIZE, seed: int = 0) -> torch.Tensor:
    """The fixed training set (the same on every rank: it depends on the seed only)."""
    return sample(n, torch.Generator().manual_seed(seed))


class ToyLoader:
    """Batches of a fixed in-memory set, reshuffled every epoch, split across ranks.

    The position (epoch, batch within epoch) is all that resuming needs: the permutation of an
    epoch is a function of (seed, epoch), so every rank derives the same one and takes its slice.
    """

    def __init__(self, data: torch.Tensor, batch_size: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0, device: torch.device | str = "cpu"):
        self.data, self.batch_size, self.seed = data.to(device), batch_size, seed
        self.held_out = sample(10_000, torch.Generator().manual_seed(seed + 1)).to(device)
        self.rank, self.world_size = rank, world_size
        self.batches_per_epoch = len(data) // (batch_size * world_size)
        if self.batches_per_epoch == 0:
            raise ValueError(f"{len(data)} samples cannot fill one batch of {batch_size} "
                             f"on each of {world_size} workers")
        self.epoch, self.batch = 0, 0

    @classmethod
    def for_config(cls, cfg, rank: int, world: int, device) -> "ToyLoader":
        return cls(dataset(TRAIN_SIZE, cfg.run.seed), cfg.optim.batch_size, rank, world,
                   cfg.run.seed, device)

    def initial_state(self) -> dict:
        return {"epoch": 0, "batch": 0}

    def validation_batch(self, n: int) -> torch.Tensor:
        """Held-out points from the same mixture (a different seed than the training set)."""
        return self.held_out[:n]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])

    def __iter__(self):
        while True:
            perm = torch.randperm(len(self.data),
                                  generator=torch.Generator().manual_seed(self.seed + self.epoch))
            per_rank = self.batches_per_epoch * self.batch_size
            mine = perm[self.rank * per_rank:(self.rank + 1) * per_rank]
            while self.batch < self.batches_per_epoch:
                i = self.batch * self.batch_size
                self.batch += 1
                yield self.data[mine[i:i + self.batch_size].to(self.data.device)], None
            self.epoch, self.batch = self.epoch + 1, 0
