"""A run's ``checkpoints/`` folder: committed step checkpoints, rotation, best.pt, validation.

Layout::

    step-00004000.pt        a checkpoint after 4000 optimizer steps (periodic, epoch end, stop)
    step-00004000.pt.json   its sidecar: size, SHA-256, step, epoch, batch, best (the commit)
    last.pt                 a hard link to the newest step file (what --setup.ckpt_path takes)
    best.pt, best.pt.json   the best validation so far, and its sidecar

A checkpoint counts only once its sidecar is written, after the file itself was written to a
temp file, fsynced and renamed (:func:`save_checkpoint`): a crash at any point leaves the
previous committed file as the newest. best.pt is written before the step checkpoint of the
same epoch, so the best value a checkpoint records never runs ahead of best.pt; on resume,
best.pt's sidecar is the best value (:meth:`CheckpointFolder.best_value`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from hrpose.engine.checkpoint import (
    TEMP_SUFFIX,
    disk_full_message,
    is_disk_full,
    load_checkpoint,
    save_checkpoint,
)
from hrpose.engine.task import DiskFull
from hrpose.evaluation.protocol import sha256_file

_STEP_FILE = re.compile(r"step-(\d+)\.pt")


def sidecar_of(path: Path) -> Path:
    """``step-N.pt`` -> ``step-N.pt.json``."""
    return path.with_name(path.name + ".json")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}{TEMP_SUFFIX}")
    with tmp.open("w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def check(path: Path) -> str | None:
    """Why ``path`` is not a committed, intact checkpoint (None when it is): its sidecar must
    exist and name the file's size and SHA-256."""
    side = sidecar_of(path)
    if not path.is_file():
        return "missing"
    try:
        meta = json.loads(side.read_text())
    except FileNotFoundError:
        return f"no sidecar {side.name} (the save did not finish)"
    except (OSError, ValueError) as e:
        return f"unreadable sidecar {side.name} ({e})"
    size = path.stat().st_size
    if size != meta.get("size"):
        return f"{size} bytes, its sidecar says {meta.get('size')} (truncated?)"
    if sha256_file(path) != meta.get("sha256"):
        return "SHA-256 differs from its sidecar (corrupt)"
    return None


class CheckpointFolder:
    """Saves, rotates and finds the checkpoints of one run folder (rank 0 writes)."""

    def __init__(self, folder: Path, keep: int) -> None:
        self.folder, self.keep = Path(folder), keep

    def step_files(self) -> list[Path]:
        """The step-*.pt files, newest (highest step) first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir()
                 if (m := _STEP_FILE.fullmatch(p.name))]  # fmt: skip
        return [p for _, p in sorted(found, reverse=True)]

    def save(self, state: dict[str, Any]) -> Path:
        """Commit ``state`` as ``step-<state['step']>.pt``, point last.pt at it, drop old ones."""
        path = self._commit(self.folder / f"step-{state['step']:08d}.pt", state)
        self._link_last(path)
        for old in self.step_files()[self.keep :]:
            sidecar_of(old).unlink(missing_ok=True)  # uncommit first, then remove
            old.unlink(missing_ok=True)
        return path

    def save_best(self, state: dict[str, Any]) -> Path:
        """Commit ``state`` as best.pt (before the step checkpoint that records its value)."""
        return self._commit(self.folder / "best.pt", state)

    def _commit(self, path: Path, state: dict[str, Any]) -> Path:
        save_checkpoint(path, state)
        meta = {"file": path.name, "size": path.stat().st_size, "sha256": sha256_file(path),
                "step": state.get("step"), "epoch": state.get("epoch"),
                "batch": state.get("epoch_batches"), "best": state.get("best")}  # fmt: skip
        try:
            _write_json(sidecar_of(path), meta)
        except OSError as e:
            if not is_disk_full(e):
                raise
            path.unlink(missing_ok=True)  # uncommitted: give its space back
            sidecar_of(path).unlink(missing_ok=True)
            raise DiskFull(disk_full_message(path, state)) from e
        return path

    def set_aside_after(self, step: int) -> None:
        """Rename step files past ``step`` (a resume from an earlier one abandons them) so that
        neither resume=auto nor the rotation takes them for this run's newest."""
        for path in self.step_files():
            if int(_STEP_FILE.fullmatch(path.name).group(1)) > step:  # type: ignore[union-attr]
                for p in (path, sidecar_of(path)):
                    if p.exists():
                        p.rename(p.with_name(p.name + ".abandoned"))
                print(f"resuming at step {step}: set {path.name} aside as {path.name}.abandoned")

    def _link_last(self, path: Path) -> None:
        tmp = self.folder / f".last.pt{TEMP_SUFFIX}"
        tmp.unlink(missing_ok=True)
        try:
            os.link(path, tmp)  # no second copy on disk
        except OSError:  # a filesystem without hard links
            tmp.symlink_to(path.name)
        os.replace(tmp, self.folder / "last.pt")

    def check_room(self, size: int) -> None:
        """Raise :class:`DiskFull` when the folder's disk has less than ``size`` bytes free:
        a torchrun restart after a full disk stops before redoing any step (not retried)."""
        free = shutil.disk_usage(self.folder).free
        if free < size:
            raise DiskFull(
                f"no space left on device for the next checkpoint in {self.folder}: it needs "
                f"about {size / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free. Free space, "
                "then start the job again"
            )

    def remove_temp_files(self) -> None:
        """Drop temp files that a killed save left behind."""
        if self.folder.is_dir():
            for p in self.folder.glob(f".*{TEMP_SUFFIX}"):
                p.unlink(missing_ok=True)

    def newest_valid(self, task: str) -> tuple[Path | None, dict[str, Any] | None]:
        """The newest committed, intact and loadable checkpoint and its state; each newer one
        that fails is reported by name. A folder of an older hrpose (last.pt alone) gives it."""
        candidates = self.step_files()
        legacy = self.folder / "last.pt"
        for path in candidates:
            why = check(path)
            if why is None:
                try:
                    state = load_checkpoint(path)
                except ValueError as e:
                    why = str(e)
                else:
                    if state.get("task") == task:
                        return path, state
                    why = f"a {state.get('task')!r} checkpoint, not {task!r}"
            print(f"checkpoint {path} is not usable: {why}; trying the previous one")
        if not candidates and legacy.is_file():
            return legacy, load_checkpoint(legacy)
        if candidates:
            raise ValueError(
                f"no usable checkpoint in {self.folder} (all {len(candidates)} failed, see "
                "above): point --setup.ckpt_path at a good copy, or pick another "
                "--setup.run_name to start a new run"
            )
        return None, None

    def best_value(self, recorded: float | None) -> float | None:
        """The best value to go on from: best.pt's sidecar when best.pt is intact, whatever
        ``recorded`` (the resumed checkpoint's value) says; ``recorded`` for a best.pt of an
        older hrpose (no sidecar); None when best.pt is missing or broken (with a warning if
        one is there: the next validation then writes a new best.pt)."""
        path = self.folder / "best.pt"
        if not path.exists():
            return None
        if not sidecar_of(path).exists():
            return recorded
        why = check(path)
        if why is None:
            best = json.loads(sidecar_of(path).read_text()).get("best")
            if best is not None:
                return float(best)
            why = "its sidecar holds no best value"
        print(f"best.pt in {self.folder} is not usable ({why}): the next validation replaces it")
        return None
