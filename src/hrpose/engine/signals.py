"""SIGINT/SIGTERM during training: finish the step, save last.pt, exit cleanly."""

from __future__ import annotations

import contextlib
import signal
import sys
from typing import Any


class StopFlag:
    """SIGINT/SIGTERM set a flag; the loop saves last.pt at the next step and exits cleanly.

    A context manager: the previous handlers come back on exit. A second Ctrl-C stops at once.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.signal = signum
        print(
            f"\n{signal.Signals(signum).name} received: saving last.pt after this step "
            "(press Ctrl-C again to stop at once)",
            file=sys.stderr,
        )

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
