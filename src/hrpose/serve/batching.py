"""One thread owns the model; concurrent requests queue their images and share network batches.

The Predictor is not shared between threads: only the batcher's thread calls it, so requests
cannot race on its state (a per-request flip gets its own shallow copy, made once, with its own
settings). Up to ``max_batch`` queued images of one size and one flip go through the network as
one batch (``Predictor.predict_batch``: the same people as one call per image); people are then
decoded per image. ``max_batch`` follows the per-device rule of video frames
(``hrpose.predict.default_batch_frames``: 1 on a CPU, where batching was measured slower).
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from hrpose.predict import Prediction, Predictor


class Busy(RuntimeError):
    """The queue is full (or the server is stopping): the client should retry later."""


@dataclass
class _Job:
    image: np.ndarray
    flip: bool
    future: Future
    queued: float = field(default_factory=time.perf_counter)

    def fits(self, other: _Job) -> bool:
        return self.flip == other.flip and self.image.shape == other.image.shape


@dataclass(frozen=True)
class Timing:
    """Where one request's model time went, in milliseconds."""

    queue_ms: float  # waiting for the model thread (and for batch mates)
    predict_ms: float  # network + people decoding of the whole batch
    batch_size: int


_STOP = None


class MicroBatcher:
    """Runs ``predictor`` on one thread; ``submit`` returns a Future of (Prediction, Timing)."""

    def __init__(
        self,
        predictor: Predictor,
        max_batch: int = 1,
        timeout_s: float = 0.005,
        max_queue: int = 256,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.predictor = predictor
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self.batch_sizes: collections.Counter[int] = collections.Counter()  # size -> batches
        self._variants = {predictor.params.flip: predictor}
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="hrpose-model", daemon=True)
        self._thread.start()

    def submit(self, image: np.ndarray, flip: bool | None = None) -> Future:
        """Queue one RGB uint8 image; ``flip`` None keeps the model's setting."""
        if self._closed:
            raise Busy("the server is shutting down")
        job = _Job(image, self.predictor.params.flip if flip is None else flip, Future())
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise Busy(f"{self._queue.maxsize} requests are already queued; retry later") from None
        return job.future

    def close(self, timeout: float | None = 30.0) -> None:
        """Finish the queued jobs, then stop the thread."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join(timeout)

    def _variant(self, flip: bool) -> Predictor:
        if flip not in self._variants:  # same network and spec, other decode settings
            p = copy.copy(self.predictor)
            p.record = p.record.with_inference(dataclasses.replace(p.params, flip=flip))
            self._variants[flip] = p
        return self._variants[flip]

    def _run(self) -> None:
        pending: collections.deque[_Job] = collections.deque()  # taken, not fitting a batch yet
        stopping = False
        while pending or not stopping:
            first = pending.popleft() if pending else self._queue.get()
            if first is _STOP:
                stopping = True
                continue
            batch = [first]
            for job in list(pending):  # earlier arrivals first
                if len(batch) < self.max_batch and job.fits(first):
                    pending.remove(job)
                    batch.append(job)
            deadline = time.perf_counter() + self.timeout_s
            while len(batch) < self.max_batch and not stopping:
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.perf_counter()))
                except queue.Empty:
                    break
                if job is _STOP:
                    stopping = True
                elif job.fits(first):
                    batch.append(job)
                else:
                    pending.append(job)
            self._execute(batch)
        while True:  # anything queued after the stop: refused, never left hanging
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP:
                job.future.set_exception(Busy("the server is shutting down"))

    def _execute(self, batch: list[_Job]) -> None:
        jobs = [j for j in batch if j.future.set_running_or_notify_cancel()]
        if not jobs:
            return
        t0 = time.perf_counter()
        try:
            preds: list[Prediction] = self._variant(jobs[0].flip).predict_batch(
                [j.image for j in jobs]
            )
        except Exception as e:  # noqa: BLE001 - handed to every waiting request
            for j in jobs:
                j.future.set_exception(e)
            return
        t1 = time.perf_counter()
        self.batch_sizes[len(jobs)] += 1
        for j, pred in zip(jobs, preds, strict=True):
            timing = Timing((t0 - j.queued) * 1e3, (t1 - t0) * 1e3, len(jobs))
            j.future.set_result((pred, timing))
