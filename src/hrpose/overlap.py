"""I/O beside compute: images decoded and preprocessed ahead of the network, drawings and video
encoding done behind it.

:func:`prepared_images` reads and prepares (:func:`hrpose.predict.prepare_image`) images in
DataLoader worker processes, in order, while the main process runs the network; ``workers=0``
does it in the main process, one image after the other (the old sequential path, kept as the
baseline of benchmarks/bench_folder.py). :class:`WriteBehind` runs drawing and writing jobs in
order on one thread (OpenCV and PyAV release the GIL while they encode); :func:`read_ahead`
decodes a video's next frames on a thread. A read error is returned with its item, never
raised in a worker, so one bad file does not end a folder run.
"""

from __future__ import annotations

import queue
import signal
import threading
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from torch.utils.data import DataLoader, Dataset

from hrpose.data.images import ImageReadError, decode_image, read_image
from hrpose.predict import PreparedImage, prepare_image

T = TypeVar("T")
URL_TIMEOUT_S = 60.0


def is_url(source: str) -> bool:
    """Whether ``source`` is an http(s) URL (not a path)."""
    return source.startswith(("http://", "https://"))


def read_source(source: str) -> np.ndarray:
    """RGB uint8 (H, W, 3) of an image file or an http(s) URL; :class:`ImageReadError` names
    the source and the problem."""
    if not is_url(source):
        return read_image(source)
    try:
        with urllib.request.urlopen(source, timeout=URL_TIMEOUT_S) as r:  # noqa: S310 (http only)
            data = r.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise ImageReadError(f"{source}: could not be downloaded ({e})") from e
    return decode_image(data, source)


@dataclass
class LoadedImage:
    """One item of :func:`prepared_images`: the image and its network inputs, or the error."""

    index: int
    image: np.ndarray | None = None
    prepared: PreparedImage | None = None
    error: str | None = None


class _Images(Dataset):
    def __init__(self, sources: Sequence[str], input_size: int, scales: Sequence[float],
                 reader: Callable[[str], np.ndarray]) -> None:  # fmt: skip
        self.sources, self.input_size, self.scales = list(sources), input_size, tuple(scales)
        self.reader = reader

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> LoadedImage:
        try:
            image = self.reader(self.sources[i])
        except (ImageReadError, OSError, ValueError) as e:
            return LoadedImage(i, error=str(e))
        return LoadedImage(i, image, prepare_image(image, self.input_size, self.scales))


def _as_is(item: Any) -> Any:
    return item


def _worker_init(worker_id: int) -> None:
    """Ctrl-C is the main process's to handle (it reaches the whole process group on a
    terminal). OpenCV's thread count is left alone: cv2.setNumThreads in a worker forked from
    a process whose OpenCV pool ran hangs there."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def prepared_images(
    sources: Sequence[str],
    input_size: int,
    scales: Sequence[float],
    workers: int,
    reader: Callable[[str], np.ndarray] = read_source,
) -> Iterator[LoadedImage]:
    """:class:`LoadedImage` of each source, in order: read by ``reader`` (a module-level
    function: it runs in the workers) and prepared for the network in ``workers`` DataLoader
    worker processes ahead of the caller (0: in this process, when asked for)."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    data = _Images(sources, input_size, scales, reader)
    if workers == 0 or len(data) == 0:
        return (data[i] for i in range(len(data)))
    loader = DataLoader(data, batch_size=None, shuffle=False, num_workers=min(workers, len(data)),
                        collate_fn=_as_is, worker_init_fn=_worker_init)  # fmt: skip
    return iter(loader)


class WriteBehind:
    """Jobs (drawing, writing files, encoding video frames) run in submission order on one
    thread behind the caller, at most ``depth`` waiting; ``enabled=False`` runs each at once in
    the caller (the sequential path). An error in a job is raised by the next call."""

    def __init__(self, enabled: bool = True, depth: int = 8) -> None:
        self.depth = depth
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="hrpose-writer") if enabled else None
        self._pending: deque[Future] = deque()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` after the jobs submitted before it."""
        if self._pool is None:
            fn(*args)
            return
        self._pending.append(self._pool.submit(fn, *args))
        while self._pending and (self._pending[0].done() or len(self._pending) > self.depth):
            self._pending.popleft().result()

    def drain(self) -> None:
        """Wait for every submitted job (raising the first error)."""
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        """Finish the submitted jobs and stop the thread."""
        try:
            self.drain()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


_END = object()


def read_ahead(items: Iterable[T], depth: int = 8, enabled: bool = True) -> Iterator[T]:
    """``items`` (e.g. decoded video frames) produced on a thread, up to ``depth`` ahead."""
    if not enabled:
        yield from items
        return
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as e:  # handed to the consumer, raised there
            q.put(e)

    thread = threading.Thread(target=produce, name="hrpose-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
