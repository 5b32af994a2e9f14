"""Counting the unreadable files a task's loader skipped, and stopping when there are too many.

The loader replaces (training) or drops (validation) a sample whose image is missing,
unreadable or truncated, and each batch names the files it skipped
(:class:`hrpose.data.loaders.SampleBatch`). :class:`BadSampleCounter` keeps the distinct files
met so far, logs each one once (rank 0), and stops training with :class:`TooManyBadSamples`
listing them when they pass ``max_fraction`` of the dataset's files.

The denominator is the dataset's file count, not the samples seen so far: a fraction of samples
seen would stop a run whose only bad file comes early in the first epoch (1 in the first 500
samples is 0.2%), while distinct bad files over all files only grows, so the stop comes as soon
as the bound is certainly passed and never on a run that stays under it. After a resume the
count starts again (the files are met again and named again).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable

from hrpose.engine import distributed as dist_utils
from hrpose.engine.task import TrainingStopped

log = logging.getLogger(__name__)

LISTED = 20  # files named in a message; the log names every one


class TooManyBadSamples(TrainingStopped):
    """More unreadable files than ``data.max_bad_fraction`` allows; the message lists them."""


class BadSampleCounter:
    """The distinct unreadable files of one dataset (``num_files`` files) met so far."""

    def __init__(self, num_files: int, max_fraction: float, what: str = "training set") -> None:
        if not 0.0 <= max_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction={max_fraction}: a fraction in [0, 1]")
        self.num_files, self.max_fraction, self.what = max(1, num_files), max_fraction, what
        self.files: dict[str, None] = {}  # insertion-ordered set: the order they were met
        self.skips = 0  # samples replaced or dropped on this rank (a file may count again)

    @property
    def limit(self) -> int:
        """The most distinct bad files allowed."""
        return int(self.max_fraction * self.num_files)

    def update(self, skipped: Iterable[str], *, check: bool = True) -> list[str]:
        """Add one batch's skipped files; the files new to the run, on every rank.

        Under DDP every rank must call it for every batch: one all-reduce of a count, and an
        all-gather of names only when some rank met a new file. With ``check``, raise
        :class:`TooManyBadSamples` (on every rank at once) past the limit.
        """
        skipped = list(skipped)
        self.skips += len(skipped)
        mine = [f for f in dict.fromkeys(skipped) if f not in self.files]
        if dist_utils.world_size() > 1:
            if not dist_utils.reduce_sum({"new": len(mine)})["new"]:
                return []
            gathered = dist_utils.gather_objects(mine)
            mine = [f for part in gathered for f in part]  # type: ignore[attr-defined]
        new = [f for f in dict.fromkeys(mine) if f not in self.files]
        for f in new:
            self.files[f] = None
            if dist_utils.is_main():
                log.warning("unreadable image skipped in the %s (named once): %s", self.what, f)
        if check and len(self.files) > self.limit:
            raise TooManyBadSamples(self.message())
        return new

    def message(self) -> str:
        """What stopped the run: the count, the limit and the files (the first few)."""
        files = list(self.files)
        shown = ", ".join(files[:LISTED])
        more = (
            f" and {len(files) - LISTED} more (all named in the log)" if len(files) > LISTED else ""
        )
        return (
            f"{len(files)} unreadable image file(s) in the {self.what} of {self.num_files}, more "
            f"than data.max_bad_fraction={self.max_fraction:g} allows ({self.limit}): {shown}"
            f"{more}. Restore or re-download them (hrpose prepare reports incomplete folders), "
            "remove their annotations, or raise --data.max_bad_fraction"
        )


def report_validation(
    unreadable: Collection[str], named: dict[str, None], total: int
) -> dict[str, float]:
    """Log validation's unreadable files (each named once per run, the count every time) and
    give the ``bad_images`` metric: ``{}`` when there are none (metrics.csv gains the column
    when they appear). ``named`` holds the files already named; call it on rank 0 only."""
    if not unreadable:
        return {}
    new = sorted(set(unreadable) - named.keys())
    for f in new[:LISTED]:
        log.warning("unreadable validation image left out (named once): %s", f)
    if len(new) > LISTED:
        log.warning("... and %d more unreadable validation images", len(new) - LISTED)
    named.update(dict.fromkeys(new))
    log.warning("validation: %d of %d images unreadable, left out of the metrics",
                len(unreadable), total)  # fmt: skip
    return {"bad_images": float(len(unreadable))}
