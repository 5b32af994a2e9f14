"""Exact contiguous shards of a job's items over ranks: no padding, no duplicates.

Rank r of W takes one contiguous run of the items, the runs in rank order, so concatenating
every rank's results in rank order gives the one-process order (COCOeval breaks score ties by
that order, so the stats are bit-identical). With weights (a video's frame count) the runs hold
about equal work; an item is never split. Pure: the same answer on every rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def shard_owner(weights: Sequence[int] | np.ndarray, world_size: int) -> np.ndarray:
    """(N,) rank of each item: item i goes to the rank whose equal part of the total weight
    holds its weight's midpoint. Unit weights give runs whose lengths differ by at most one."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    w = np.asarray(weights, dtype=np.int64).reshape(-1)
    if (w < 1).any():
        raise ValueError("shard weights must be >= 1 (a video of unknown length weighs 1)")
    if w.size == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(w)
    # integer arithmetic: floor(world * midpoint / total), midpoint = end - weight / 2
    return (world_size * (2 * ends - w)) // (2 * int(ends[-1]))


def shard_slice(n: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous run of ``n`` unit-weight items."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    owner = shard_owner(np.ones(n, np.int64), world_size)
    start = int(np.searchsorted(owner, rank, "left"))
    return slice(start, int(np.searchsorted(owner, rank, "right")))


def shard(
    items: Sequence[T], rank: int, world_size: int, weights: Sequence[int] | None = None
) -> list[T]:
    """Rank ``rank``'s contiguous share of ``items`` (balanced by ``weights`` when given)."""
    if weights is None:
        return list(items[shard_slice(len(items), rank, world_size)])
    if len(weights) != len(items):
        raise ValueError(f"{len(weights)} weights for {len(items)} items")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    owner = shard_owner(weights, world_size)
    return [item for item, r in zip(items, owner.tolist(), strict=True) if r == rank]
