"""Deterministic orders: the shuffled write order of a split and validation sets carved from a
training split.

Orders come from SHA-256 of (seed, position) rather than a random generator, so they are the
same on every machine and every numpy/Python version: re-running a conversion anywhere yields
byte-identical shards.
"""
from __future__ import annotations

import hashlib
from typing import Sequence, TypeVar

from .dataset import SourceError

T = TypeVar("T")


def stable_permutation(n: int, seed: int) -> list[int]:
    """A pseudo-random permutation of range(n) that depends only on (n, seed)."""
    def rank(i: int) -> bytes:
        return hashlib.sha256(f"{seed}:{i}".encode()).digest()
    return sorted(range(n), key=rank)


def stable_shuffle(items: Sequence[T], seed: int) -> list[T]:
    return [items[i] for i in stable_permutation(len(items), seed)]


def carve(items: Sequence[T], n: int, seed: int, what: str) -> tuple[list[T], list[T]]:
    """Split `items` into (rest, carved) with `n` items carved out by a seeded choice; both keep
    the source order. `what` names the split being carved from, for the error message."""
    if n < 0 or n >= len(items):
        raise SourceError(f"{what}: cannot carve {n} validation samples out of {len(items)}")
    chosen = set(stable_permutation(len(items), seed)[:n])
    rest = [x for i, x in enumerate(items) if i not in chosen]
    carved = [x for i, x in enumerate(items) if i in chosen]
    return rest, carved
