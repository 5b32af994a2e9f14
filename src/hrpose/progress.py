"""Progress bars that suit where the output goes: tqdm on a terminal, plain lines elsewhere.

A bar redraws itself with carriage returns; in a log file or a pipe every redraw becomes a line
of its own (hundreds per epoch in the demo log). Off a terminal a bar therefore prints nothing
while it runs and at most one plain line when it closes: what was done, how fast, how long.
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
    is False (the caller prints its own line, as the training loop does per epoch)."""

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
    ) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.enabled, self.summary, self.postfix = enabled, summary, {}
        self._stream = sys.stderr if stream is None else stream
        self._start, self._first = time.perf_counter(), initial
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
