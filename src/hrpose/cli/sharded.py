"""A command as one job over torchrun's ranks: the process group, this rank's device, and one
progress bar on rank 0 for the work of every rank.

``torchrun --nproc-per-node=N -m hrpose eval pose ...`` (or ``predict``) starts N copies; each
calls :func:`start_job`, works on its shard (:mod:`hrpose.sharding`) and reports finished items
to a :class:`JobProgress`. The counts travel through the rendezvous store torchrun already
runs (a TCP key-value store, ``MASTER_ADDR:MASTER_PORT``): a rank adds to a counter without
waiting for the others, so ranks with more work or slower images never hold the rest up, and
rank 0 draws the job's bar from the counter. Without torchrun everything is one process.
"""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass
from typing import Any

import torch

from hrpose.engine import distributed as dist_utils
from hrpose.progress import ProgressBar

# A rank waits this long for the others at the final merge: past a shard's worth of imbalance
# on a slow rank, a dead rank ends the job through torchrun anyway.
JOB_TIMEOUT_S = 24 * 3600


@dataclass(frozen=True)
class Job:
    """Where this process sits in a command's job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    store: Any = None  # torch.distributed.Store of the rendezvous; None in one process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.world_size > 1


def start_job(device: torch.device) -> Job:
    """Join torchrun's process group when launched with WORLD_SIZE > 1 (gloo on CPU, nccl on
    CUDA, as training); a plain process is a job of one."""
    info = dist_utils.env_info()
    if info.world_size <= 1:
        return Job()
    dist_utils.init_distributed(True, device, timeout_s=JOB_TIMEOUT_S)
    store = torch.distributed.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        is_master=False,
        timeout=datetime.timedelta(seconds=300),
    )
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", info.world_size))
    return Job(info.rank, info.world_size, info.local_rank, local_world, store)


def job_device(device: str | None, local_rank: int) -> str:
    """The device of this rank: ``--device`` (default cuda if available), one GPU per local
    rank when it names no index."""
    name = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and dist_utils.env_info().world_size > 1:
        name = f"cuda:{local_rank}"
    return name


def end_job(job: Job) -> None:
    """Leave the process group."""
    if job.sharded:
        dist_utils.cleanup()


def default_workers(job: Job) -> int:
    """DataLoader workers per rank: the CPUs of the machine per local rank, less the one the
    network runs on, at most 4; 0 (decode in the main process) when that leaves none."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(4, (cpus or 1) // job.local_world_size - 1))


class JobProgress:
    """Finished items of the whole job: every rank calls :meth:`update`; rank 0 shows one bar
    (a tqdm bar with rate and ETA on a terminal, a line per chunk in a log)."""

    def __init__(self, job: Job, total: int, desc: str, unit: str, *, initial: int = 0,
                 enabled: bool = True, summary: bool = False,
                 stream: Any = None) -> None:  # fmt: skip
        self.job, self.total = job, total
        chunk = max(16, -(-max(total - initial, 0) // 10))
        self.bar = ProgressBar(total, desc, unit, enabled=enabled and job.is_main, stream=stream,
                               summary=summary, initial=initial, every=chunk)  # fmt: skip
        self._key = f"hrpose/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/{desc}"
        self._initial = initial

    def update(self, n: int = 1) -> None:
        """``n`` more items finished on this rank."""
        if self.job.store is None:
            self.bar.update(n)
            return
        # store.add returns the new job-wide count: rank 0 draws it, the others only add
        done = int(self.job.store.add(f"{self._key}/done", n))
        if self.job.is_main:
            self._advance(done)

    def finish(self, poll_s: float = 0.25) -> None:
        """This rank is done; rank 0 keeps the bar moving until every rank is, then closes it."""
        if self.job.store is not None:
            self.job.store.add(f"{self._key}/ranks", 1)
            while self.job.is_main:
                done = int(self.job.store.add(f"{self._key}/done", 0))
                self._advance(done)
                if int(self.job.store.add(f"{self._key}/ranks", 0)) >= self.job.world_size:
                    break
                time.sleep(poll_s)
        self.bar.close()

    def close(self) -> None:
        """End the bar without waiting (an interrupted job)."""
        self.bar.close()

    def _advance(self, done: int) -> None:
        done += self._initial  # the items an earlier run finished
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)
