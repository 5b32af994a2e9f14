"""DataLoader wiring: a seeded epoch sampler, per-sample augmentation seeds, workers, pinning.

What a loader yields is a pure function of (seed, epoch, position): the sample order comes from
``(seed, epoch)`` and each sample's augmentation from ``(seed, epoch, index)``. Worker count,
persistent workers and a resume therefore change nothing, and a run stopped mid-epoch resumes
at the next batch with ``set_epoch(epoch, start=samples_done)``. Nothing is drawn from the
global generators when an iterator is created.

Bad samples (``bad_samples=``): a sample whose image is missing, unreadable or truncated
(:class:`hrpose.data.coco.UnreadableSample`) raises by default. ``"replace"`` (training) reads
instead the index :func:`replacement_index` gives, a pure function of (seed, epoch, index, try),
with the slot's own augmentation seed, so batches stay a function of (seed, epoch, position) and
a resume stays exact; ``"drop"`` (validation) leaves the sample out. Either way each batch comes
as a :class:`SampleBatch` naming the files skipped: workers hold copies of the dataset, so the
count travels with the batches to the training process, which counts (``engine.bad_samples``).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from hrpose.data.coco import DatasetError, UnreadableSample

BAD_SAMPLE_POLICIES = ("raise", "replace", "drop")
REPLACEMENT_TRIES = 10  # unreadable replacements in a row before the loader gives up


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


def replacement_index(seed: int, epoch: int, index: int, attempt: int, size: int) -> int:
    """The index read in place of unreadable ``index`` at try ``attempt`` (0, 1, ...)."""
    return derived_seed(seed, epoch, index, attempt) % size


class Sample(NamedTuple):
    """One item from :class:`SeededSamples` under a skipping policy (``item`` None: dropped)."""

    item: Any
    skipped: tuple[str, ...]  # files that could not be read for this slot


class SampleBatch(NamedTuple):
    """A batch from a loader that skips bad samples: the collated items and the skipped files."""

    data: Any  # None when every sample of the batch was dropped
    skipped: tuple[str, ...]


class SeededSamples(Dataset):
    """``dataset[index]`` computed with torch's generator seeded by ``(seed, epoch, index)``.

    Transforms draw their randomness from torch's generator (PoseTrainTransform and the ImageNet
    TrainTransform do); seeding it per sample makes each sample independent of which worker
    reads it and of what that worker read before. The caller's generator state is restored.
    ``bad_samples`` says what an :class:`UnreadableSample` does (see the module docstring).
    """

    def __init__(self, dataset: Any, seed: int, bad_samples: str = "raise") -> None:
        if bad_samples not in BAD_SAMPLE_POLICIES:
            raise ValueError(f"bad_samples={bad_samples!r}: choose from {BAD_SAMPLE_POLICIES}")
        self.dataset, self.seed, self.bad_samples = dataset, seed, bad_samples

    def __len__(self) -> int:
        return len(self.dataset)

    def _read(self, epoch: int, slot: int, index: int) -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed(self.seed, epoch, slot))
            return self.dataset[index]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if self.bad_samples == "raise":
            return self._read(epoch, index, index)
        skipped: list[str] = []
        read = index
        for attempt in range(REPLACEMENT_TRIES):
            try:
                return Sample(self._read(epoch, index, read), tuple(skipped))
            except UnreadableSample as e:
                skipped.append(e.path)
                if self.bad_samples == "drop":
                    return Sample(None, tuple(skipped))
                read = replacement_index(self.seed, epoch, index, attempt, len(self))
        files = ", ".join(dict.fromkeys(skipped))
        raise DatasetError(
            f"sample {index} and its {REPLACEMENT_TRIES - 1} replacements are all unreadable "
            f"({files}): most of the dataset is missing or corrupt; check the image folder (is "
            "it complete and mounted? hrpose prepare coco --root ... reports what is missing)"
        )


class SkipCollate:
    """Collate :class:`Sample` items into a :class:`SampleBatch` (a class: workers pickle it)."""

    def __init__(self, collate_fn: Callable[[list], Any] | None = None) -> None:
        self.collate_fn = collate_fn or default_collate

    def __call__(self, samples: Sequence[Sample]) -> SampleBatch:
        skipped = tuple(f for s in samples for f in s.skipped)
        kept = [s.item for s in samples if s.item is not None]
        return SampleBatch(self.collate_fn(kept) if kept else None, skipped)


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
    bad_samples: str = "raise",
) -> DataLoader:
    """A DataLoader over ``dataset`` whose batches depend only on ``seed`` and the epoch.

    Under an initialised process group each rank reads its own shard (``pad=False`` for
    validation). The caller calls ``loader.sampler.set_epoch(epoch)`` before each epoch (the
    training loop does). Persistent workers are safe: they hold no sampling or RNG state.
    ``bad_samples="replace"`` or ``"drop"`` yields :class:`SampleBatch` es (module docstring).
    """
    rank, world = 0, 1
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    sampler = EpochSampler(
        len(dataset), shuffle=shuffle, seed=seed, rank=rank, world_size=world, pad=pad
    )
    return DataLoader(
        SeededSamples(dataset, seed, bad_samples),
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
        collate_fn=collate_fn if bad_samples == "raise" else SkipCollate(collate_fn),
    )
