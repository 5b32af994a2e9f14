"""predictions.jsonl: a line per finished image and per video frame, written and flushed at once,
so Ctrl-C, SIGTERM or a crash keep everything finished, and a rerun with ``--resume`` skips it
without duplicating a line.

Lines (one JSON object each):

- an image: ``{"file_name": N, "people": [COCO result rows]}``;
- a video frame: ``{"file_name": V, "frame": n, "people": [rows with "track_id"]}``;
- a video's end: ``{"file_name": V, "frames": count, "finished": true}``.

A video counts as done only with its end line: tracking needs its frames in order, so a video
cut short is redone from its first frame on resume (its earlier frame lines are dropped). A
sharded run writes one log per rank (``predictions.rank<r>.jsonl``); :func:`read_logs` reads any
set of logs into one :class:`Finished`, the first finished copy of an item winning.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

LOG_NAME = "predictions.jsonl"


def rank_log_name(rank: int) -> str:
    """The log of one rank of a sharded run."""
    return f"predictions.rank{rank}.jsonl"


@dataclass
class Finished:
    """Everything finished so far: images' rows, and finished videos' rows per frame."""

    images: dict[str, list[dict]] = field(default_factory=dict)
    videos: dict[str, list[list[dict]]] = field(default_factory=dict)
    # frames of videos cut short: not done (redone on resume), but kept in the predictions.json
    # an interrupted run writes
    partial: dict[str, list[list[dict]]] = field(default_factory=dict)

    def __contains__(self, name: str) -> bool:
        return name in self.images or name in self.videos

    def __len__(self) -> int:
        return len(self.images) + len(self.videos)

    def lines(self) -> Iterator[str]:
        """The log lines that hold exactly this."""
        for name, rows in self.images.items():
            yield _image_line(name, rows)
        for name, frames in self.videos.items():
            for n, rows in enumerate(frames):
                yield _frame_line(name, n, rows)
            yield _end_line(name, len(frames))

    def rows(self, order: Iterable[str] = ()) -> list[dict]:
        """Every row: items in ``order`` (the run's order), then any others; frames in order."""
        order = list(order)
        seen = set(order)
        names = [n for n in order if n in self] + [n for n in self.names() if n not in seen]
        out: list[dict] = []
        for n in names:
            if n in self.images:
                out += self.images[n]
            else:
                out += [r for rows in self.videos[n] for r in rows]
        return out

    def names(self) -> list[str]:
        return [*self.images, *self.videos]

    def update(self, other: Finished) -> None:
        """Add what ``other`` holds and this does not (a first finished copy wins)."""
        for name, rows in other.images.items():
            if name not in self:
                self.images[name] = rows
        for name, frames in other.videos.items():
            if name not in self:
                self.videos[name] = frames
                self.partial.pop(name, None)
        for name, frames in other.partial.items():
            if name not in self and name not in self.partial:
                self.partial[name] = frames

    def partial_rows(self) -> list[dict]:
        """The rows of the frames of videos cut short, video by video."""
        return [r for frames in self.partial.values() for rows in frames for r in rows]


def read_log(path: str | Path) -> Finished:
    """What one log holds finished; a line cut short by a crash is skipped."""
    done = Finished()
    pending: dict[str, dict[int, list[dict]]] = {}  # video -> frame -> rows, until its end line
    path = Path(path)
    if not path.is_file():
        return done
    with path.open() as f:
        for text in f:
            try:
                entry = json.loads(text)
                name = str(entry["file_name"])
                if entry.get("finished"):
                    frames = pending.pop(name, {})
                    count = int(entry["frames"])
                    if sorted(frames) == list(range(count)) and name not in done:
                        done.videos[name] = [frames[n] for n in range(count)]
                elif "frame" in entry:
                    pending.setdefault(name, {})[int(entry["frame"])] = list(entry["people"])
                elif name not in done:
                    done.images[name] = list(entry["people"])
            except (ValueError, KeyError, TypeError):
                continue  # the last line of a killed run may be cut short
    for name, frames in pending.items():
        if name not in done:
            done.partial[name] = [frames[n] for n in sorted(frames)]
    return done


def read_logs(paths: Iterable[str | Path]) -> Finished:
    """What several logs (every rank's, an earlier run's) hold finished, together."""
    done = Finished()
    for p in paths:
        done.update(read_log(p))
    return done


def logs_in(folder: str | Path) -> list[Path]:
    """The logs in an output folder: the merged one first, then every rank's."""
    folder = Path(folder)
    ranks = sorted(folder.glob("predictions.rank*.jsonl"), key=lambda p: _rank_of(p.name))
    return [p for p in [folder / LOG_NAME, *ranks] if p.is_file()]


def _rank_of(name: str) -> int:
    digits = name.removeprefix("predictions.rank").removesuffix(".jsonl")
    return int(digits) if digits.isdigit() else 1 << 30


def write_log(path: str | Path, done: Finished) -> Path:
    """``done`` as one log, written atomically (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        f.writelines(done.lines())
    tmp.replace(path)
    return path


class PredictionLog:
    """Append-only log of finished work; ``keep`` (an earlier run's) is written first."""

    def __init__(self, path: str | Path, keep: Finished | None = None) -> None:
        self.path = Path(path)
        self.done = keep if keep is not None else Finished()
        # Rewrite what is finished: a cut line or an unfinished video's frames are dropped,
        # never duplicated.
        write_log(self.path, self.done)
        self._file: IO[str] = self.path.open("a")
        self.added = 0  # items finished by this run

    def __contains__(self, name: str) -> bool:
        return name in self.done

    def add(self, name: str, rows: list[dict]) -> None:
        """Record one finished image (flushed at once)."""
        self.done.images[name] = rows
        self._write(_image_line(name, rows))
        self.added += 1

    def add_frame(self, name: str, frame: int, rows: list[dict]) -> None:
        """Record one frame of a video being predicted (flushed at once)."""
        self._write(_frame_line(name, frame, rows))

    def finish_video(self, name: str, frames: list[list[dict]]) -> None:
        """Mark a video done: all ``frames`` (rows per frame) were logged by :meth:`add_frame`."""
        self.done.videos[name] = frames
        self._write(_end_line(name, len(frames)))
        self.added += 1

    def rows(self, order: Iterable[str] = ()) -> list[dict]:
        """Every finished row, items in ``order`` (the run's order), then any others."""
        return self.done.rows(order)

    def close(self) -> None:
        self._file.close()

    def _write(self, line: str) -> None:
        self._file.write(line)
        self._file.flush()


def _image_line(name: str, rows: list[dict]) -> str:
    return json.dumps({"file_name": name, "people": rows}) + "\n"


def _frame_line(name: str, frame: int, rows: list[dict]) -> str:
    return json.dumps({"file_name": name, "frame": frame, "people": rows}) + "\n"


def _end_line(name: str, frames: int) -> str:
    return json.dumps({"file_name": name, "frames": frames, "finished": True}) + "\n"


def merge_logs(folder: str | Path) -> Finished:
    """Every log of ``folder`` merged into its predictions.jsonl (written atomically before the
    rank logs are removed, so a kill in between loses nothing); what they hold."""
    folder = Path(folder)
    done = read_logs(logs_in(folder))
    write_log(folder / LOG_NAME, done)
    for p in folder.glob("predictions.rank*.jsonl"):
        p.unlink()
    return done


def clear_logs(folder: str | Path) -> None:
    """Remove an earlier run's logs (a run without ``--resume`` starts afresh)."""
    for p in logs_in(folder):
        p.unlink()
