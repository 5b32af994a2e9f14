"""DataLoader wiring: a seeded epoch sampler, per-sample augmentation seeds, workers, pinning.

What a loader yields is a pure function of (seed, epoch, position): the sample order comes from
``(seed, epoch)`` and each sample's augmentation from ``(seed, epoch, index)``. Worker count,
persistent workers and a resume therefore change nothing, and a run stopped mid-epoch resumes
at the next batch with ``set_epoch(epoch, start=samples_done)``. Nothing is drawn from the
global generators when an iterator is created.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler


def derived_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (run seed, epoch, index): no two tuples collide in use."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` pairs: this rank's shard of the epoch's order, from ``start`` on.

    The order is ``randperm`` from a generator seeded by ``(seed, epoch)`` (or file order without
    ``shuffle``). Under several ranks it shards like DistributedSampler: ``pad`` repeats the
    first indices so every rank gets as many (training: equal step counts), ``pad=False`` gives
    each index to exactly one rank (validation: no sample counted twice).
    """

    def __init__(
        self,
        size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
    ) -> None:
        if size < 1:
            raise ValueError("EpochSampler needs a non-empty dataset")
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch; skip the first ``start`` samples of this rank's shard (a resume)."""
        self.epoch, self.start = epoch, start

    def order(self) -> np.ndarray:
        """This rank's whole shard of the current epoch (ignores ``start``)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch))
            idx = torch.randperm(self.size, generator=g).numpy()
        else:
            idx = np.arange(self.size)
        if self.pad and self.size % self.world_size:
            extra = self.world_size - self.size % self.world_size
            idx = np.concatenate([idx, np.resize(idx, extra)])
        return idx[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self.order()[self.start :]:
            yield self.epoch, int(i)

    def __len__(self) -> int:
        return max(0, len(self.order()) - self.start)


class SeededSamples(Dataset):
    """``dataset[index]`` computed with torch's generator seeded by ``(seed, epoch, index)``.

    Transforms draw their randomness from torch's generator (PoseTrainTransform and the ImageNet
    TrainTransform do); seeding it per sample makes each sample independent of which worker
    reads it and of what that worker read before. The caller's generator state is restored.
    """

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed(self.seed, epoch, index))
            return self.dataset[index]


def _quiet_worker(worker_id: int) -> None:
    """Workers ignore SIGINT: a terminal's Ctrl-C reaches the whole process group, and the main
    process stops them after saving a checkpoint. SIGTERM stays: DataLoader's shutdown uses it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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
    pad: bool = True,
) -> DataLoader:
    """A DataLoader over ``dataset`` whose batches depend only on ``seed`` and the epoch.

    Under an initialised process group each rank reads its own shard (``pad=False`` for
    validation). The caller calls ``loader.sampler.set_epoch(epoch)`` before each epoch (the
    training loop does). Persistent workers are safe: they hold no sampling or RNG state.
    """
    rank, world = 0, 1
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    sampler = EpochSampler(
        len(dataset), shuffle=shuffle, seed=seed, rank=rank, world_size=world, pad=pad
    )
    return DataLoader(
        SeededSamples(dataset, seed),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory and torch.cuda.is_available(),
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
        worker_init_fn=_quiet_worker if num_workers > 0 else None,
        # Worker base seeds come from here, not from the global generator (they are unused:
        # every sample is seeded by SeededSamples).
        generator=torch.Generator().manual_seed(seed),
        collate_fn=collate_fn,
    )
