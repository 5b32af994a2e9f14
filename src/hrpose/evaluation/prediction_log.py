"""predictions.jsonl: one line per finished image (its file name and COCO result rows), written
and flushed as soon as the image is done, so Ctrl-C, SIGTERM or a crash keep every finished
image, and a rerun with ``--resume`` skips them without duplicating a line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO


class PredictionLog:
    """Append-only log of finished images; ``resume`` keeps what an earlier run finished."""

    def __init__(self, path: str | Path, resume: bool = False) -> None:
        self.path = Path(path)
        self.done: dict[str, list[dict]] = {}
        if resume and self.path.is_file():
            self.done = _finished(self.path)
        # Rewrite the valid lines: a line cut short by a crash is dropped, never duplicated.
        self.path.write_text("".join(_line(k, v) for k, v in self.done.items()))
        self._file: IO[str] = self.path.open("a")

    def __contains__(self, name: str) -> bool:
        return name in self.done

    def add(self, name: str, rows: list[dict]) -> None:
        """Record one finished image (flushed at once)."""
        self.done[name] = rows
        self._file.write(_line(name, rows))
        self._file.flush()

    def rows(self, order: list[str]) -> list[dict]:
        """Every logged row, images in ``order`` (the run's file order), then any others."""
        names = [n for n in order if n in self.done] + [n for n in self.done if n not in order]
        return [r for n in names for r in self.done[n]]

    def close(self) -> None:
        self._file.close()


def _line(name: str, rows: list[dict]) -> str:
    return json.dumps({"file_name": name, "people": rows}) + "\n"


def _finished(path: Path) -> dict[str, list[dict]]:
    done: dict[str, list[dict]] = {}
    for text in path.read_text().splitlines():
        try:
            entry = json.loads(text)
            done[str(entry["file_name"])] = list(entry["people"])
        except (ValueError, KeyError, TypeError):
            continue  # the last line of a killed run may be cut short
    return done
