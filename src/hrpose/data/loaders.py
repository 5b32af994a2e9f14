"""DataLoader wiring: samplers (DistributedSampler under torchrun), workers, pinned memory."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler


def build_loader(
    dataset: Any,
    batch_size: int,
    *,
    shuffle: bool = True,
    num_workers: int = 0,
    pin_memory: bool = False,
    drop_last: bool = False,
    seed: int = 0,
    collate_fn: Any = None,
) -> DataLoader:
    """A DataLoader; under an initialised process group each rank reads its own shard.

    The caller calls ``loader.sampler.set_epoch(epoch)`` (the training loop does) so shards
    reshuffle every epoch.
    """
    sampler = None
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
        shuffle = False
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory and torch.cuda.is_available(),
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
        collate_fn=collate_fn,
    )
