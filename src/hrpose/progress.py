"""Progress bars that suit where the output goes: tqdm on a terminal, plain lines elsewhere.

A bar redraws itself with carriage returns; in a log file or a pipe every redraw becomes a line
of its own (hundreds per epoch in the demo log). Off a terminal a bar therefore prints nothing
while it runs and at most one plain line when it closes: what was done, how fast, how long;
with ``every`` it also prints one line per chunk of that many steps (a long job's log shows how
far it is, its rate and ETA, without a line per step).
Used by the training loop, COCO evaluation and classifier evaluation; it takes plain values and
imports nothing from hrpose.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

T = TypeVar("T")


def on_terminal(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (default stderr) is an interactive terminal that can redraw a bar."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


class ProgressBar:
    """``total`` steps of work: a tqdm bar on a terminal; elsewhere silent until :meth:`close`,
    which prints one line (``desc: n/total unit in T s (R unit/s), postfix``) unless ``summary``
    is False (the caller prints its own line, as the training loop does per epoch). ``every``:
    off a terminal, also one line each time that many more steps are done, or ``every_s``
    seconds passed since the last line, with the rate and the ETA."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "it",
        *,
        enabled: bool = True,
        leave: bool = True,
        summary: bool = True,
        initial: int = 0,
        stream: IO[str] | None = None,
        every: int | None = None,
        every_s: float = 60.0,
    ) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.every, self.every_s, self._next = every, every_s, initial + (every or 0)
        self.enabled, self.summary, self.postfix = enabled, summary, {}
        self._stream = sys.stderr if stream is None else stream
        self._start, self._first = time.perf_counter(), initial
        self._last_line = self._start
        self._bar: Any = None
        if enabled and on_terminal(self._stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=leave, initial=initial,
                             dynamic_ncols=True, file=self._stream)  # fmt: skip

    def set_postfix(self, **values: Any) -> None:
        """Values shown after the bar (on a terminal) or at the end of the closing line."""
        self.postfix = values
        if self._bar is not None:
            self._bar.set_postfix(**values)

    def update(self, n: int = 1) -> None:
        """``n`` more steps done."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and self.every:
            now = time.perf_counter()
            if self.n >= self._next or now - self._last_line >= self.every_s:
                done = self.total is not None and self.n >= self.total
                if not (done and self.summary):  # the closing line says it then
                    print(self.chunk_line(now - self._start), file=self._stream, flush=True)
                self._last_line = now
                self._next = (self.n // self.every + 1) * self.every

    def close(self) -> None:
        """End the bar: tqdm closes; off a terminal, the one summary line is printed."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and self.summary:
            print(self.line(time.perf_counter() - self._start), file=self._stream, flush=True)
        self.enabled = False  # a second close prints nothing

    def line(self, elapsed: float) -> str:
        """The plain closing line for ``elapsed`` seconds."""
        done = self.n if self.total is None else f"{self.n}/{self.total}"
        rate = (self.n - self._first) / max(elapsed, 1e-9)
        extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
        return (
            f"{self.desc}: {done} {self.unit} in {elapsed:.1f} s ({rate:.1f} {self.unit}/s){extra}"
        )

    def chunk_line(self, elapsed: float) -> str:
        """A plain line for the log while running: done, rate and the ETA."""
        rate = (self.n - self._first) / max(elapsed, 1e-9)
        done = self.n if self.total is None else f"{self.n}/{self.total}"
        eta = ""
        if self.total is not None and rate > 0:
            eta = f", ETA {format_seconds(max(0.0, (self.total - self.n) / rate))}"
        return f"{self.desc}: {done} {self.unit}, {rate:.1f} {self.unit}/s{eta}"


def format_seconds(seconds: float) -> str:
    """``1h02m03s`` / ``2m03s`` / ``4s``: a duration for a log line."""
    s = int(round(seconds))
    h, m = s // 3600, s % 3600 // 60
    if h:
        return f"{h}h{m:02d}m{s % 60:02d}s"
    return f"{m}m{s % 60:02d}s" if m else f"{s}s"


def progress(
    items: Iterable[T], desc: str, unit: str = "it", *, enabled: bool = True,
    total: int | None = None, stream: IO[str] | None = None,
) -> Iterator[T]:  # fmt: skip
    """Iterate over ``items`` with a :class:`ProgressBar` (``total`` defaults to ``len(items)``)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    bar = ProgressBar(total, desc, unit, enabled=enabled, stream=stream)
    try:
        for item in items:
            yield item
            bar.update()
    finally:
        bar.close()
