"""The fully observed y of conditional ALI (paper section 4.4, eq. 7) as the networks read it:
a class becomes a one-hot vector, binary attributes a 0/1 vector (what the loaders yield: a
LongTensor of classes (B,), or a uint8 (B, n_attributes) tensor). Each network then embeds
the vector linearly (`networks.Conditioned`)."""
from __future__ import annotations

import torch

from .tables import CONDITIONS


def as_vector(y, kind: str, dim: int, n: int | None = None,
              device=None) -> torch.Tensor:
    """y -> a float (B, dim) tensor. `y`: class indices (an int, a sequence, a (B,) tensor) for
    kind "class"; a (B, dim) 0/1 tensor or nested sequence for "attributes". With `n`, a single
    y (one class, one attribute vector) is repeated n times."""
    if kind not in CONDITIONS:
        raise ValueError(f"unknown condition {kind!r}; choose one of {CONDITIONS}")
    t = torch.as_tensor(y, device=device)
    if kind == "class":
        if t.is_floating_point() and t.dim() == 2 and t.shape[1] == dim:
            v = t.float()                              # already one-hot (or soft)
        else:
            t = t.long().reshape(-1)
            if len(t) and (int(t.min()) < 0 or int(t.max()) >= dim):
                raise ValueError(f"class labels must lie in [0, {dim}); got {t.min()}..{t.max()}")
            v = torch.nn.functional.one_hot(t, dim).float()
    else:
        v = t.float().reshape(-1, t.shape[-1]) if t.dim() else t.float().reshape(1, 1)
        if v.shape[1] != dim:
            raise ValueError(f"expected {dim} attributes per example, got {v.shape[1]}")
    if n is not None and len(v) == 1:
        v = v.expand(n, -1)
    if n is not None and len(v) != n:
        raise ValueError(f"y holds {len(v)} conditions for {n} examples")
    return v
