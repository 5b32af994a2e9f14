"""Checkpoints: versioned plain dicts, written atomically (temp file + os.replace).

Format (``FORMAT_VERSION`` 1)::

    {"format_version": 1, "task": "pose"|"classifier", "model": state_dict,
     "optimizer": state_dict, "scheduler": {...schedule params...}, "scaler": state_dict|None,
     "epoch": epochs completed, "step": optimizer steps done, "rng": {...},
     "epoch_batches"/"epoch_seen"/"epoch_sums"/"epoch_skipped": progress inside an interrupted
     epoch (0 at a boundary; older files without them resume at the boundary),
     "bad_in_row": non-finite steps just before it,
     "config": nested dict, "tracking_run_id": str|None, "metrics": {...}, "best": float|None,
     "extra": {...task data, e.g. class names...}}

A file with only ``model`` (or an official state dict) is loaded for weights, never resumed.
:func:`training_state` builds this dict from a run's state and :func:`restore` puts it back;
:func:`load_pretrained` starts a new run from weights instead (a file, URL or registered name).
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hrpose.engine import distributed as dist_utils
from hrpose.engine.task import DiskFull

FORMAT_VERSION = 1
TEMP_SUFFIX = ".tmp"  # save_checkpoint's temp files: .<name>.<random>.tmp beside the target


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically: a crash mid-write never leaves a broken file.

    A full disk (ENOSPC) removes the temp file and raises :class:`DiskFull` naming the folder
    and the size needed; the file already at ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format_version": FORMAT_VERSION, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(e):
            raise DiskFull(disk_full_message(path, state)) from e
        raise
    return path


def is_disk_full(e: BaseException) -> bool:
    """Whether ``e`` is ENOSPC or EDQUOT, raised directly or wrapped by torch's zip writer."""
    while e is not None:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(e):  # torch's C++ writer: RuntimeError text only
            return True
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
    return False


def disk_full_message(path: Path, state: dict[str, Any]) -> str:
    """What a full disk stopped: the file, its folder, the size needed and the space free."""
    need = state_nbytes(state)
    free = shutil.disk_usage(path.parent).free
    return (
        f"no space left on device for checkpoint {path.name} in {path.parent}: it needs about "
        f"{need / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free. The previous checkpoints "
        "there are intact: free space (or move the run folder), then resume with "
        f"--setup.resume=auto --setup.run_name={path.parent.parent.name}"
    )


def state_nbytes(state: Any) -> int:
    """Bytes of the tensors in a (nested) checkpoint dict: about its size on disk."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_nbytes(v) for v in state.values())
    if isinstance(state, list | tuple):
        return sum(state_nbytes(v) for v in state)
    return 64  # a scalar or string: a few bytes of pickle


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; check its format version."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found: check setup.ckpt_path")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ValueError(
            f"{path} is not a readable checkpoint ({type(e).__name__}); was it cut short? "
            "Use another last.pt/best.pt or start a new run with --setup.ckpt_path=None"
        ) from e
    version = state.get("format_version") if isinstance(state, dict) else None
    if version is None:
        raise ValueError(
            f"{path} is not an hrpose training checkpoint (no format_version): "
            "use setup.pretrained_ckpt_path to start from its weights instead of resuming"
        )
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {version}, newer than this hrpose ({FORMAT_VERSION}): "
            "upgrade hrpose"
        )
    return state


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    state = {
        "python": list(random.getstate()[1]),  # plain ints: loadable with weights_only=True
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (CUDA only when present on both sides)."""
    random.setstate((3, tuple(state["python"]), None))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Progress:
    """Where training stands. A mid-epoch checkpoint has ``batch`` > 0: the resumed run starts
    at that batch of epoch ``epoch`` with the sums so far, so its epoch equals an unbroken one."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps done
    batch: int = 0  # batches done in the current epoch
    seen: int = 0  # samples this rank trained on in the current epoch
    sums: dict[str, float] = field(default_factory=dict)  # logged values summed this epoch
    skipped: int = 0  # batches of the current epoch skipped for a non-finite loss
    bad_in_row: int = 0  # consecutive skipped batches up to now
    # True while the parameters may be ahead of this record (inside the optimizer step): a
    # checkpoint then would not resume exactly, so an exception there saves none.
    updating: bool = False

    def add(self, values: dict[str, float], samples: int) -> None:
        """One more step that trained on ``samples`` samples and logged ``values``."""
        self.step, self.batch, self.seen = self.step + 1, self.batch + 1, self.seen + samples
        self.bad_in_row = 0
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def skip(self) -> None:
        """One more batch read but not trained on (its loss was not finite)."""
        self.step, self.batch = self.step + 1, self.batch + 1
        self.skipped, self.bad_in_row = self.skipped + 1, self.bad_in_row + 1

    @property
    def trained(self) -> int:
        """Batches of the current epoch that updated the model."""
        return self.batch - self.skipped

    def next_epoch(self) -> None:
        """The epoch is complete: the next one starts at batch 0 with empty sums."""
        self.epoch, self.batch, self.seen, self.sums = self.epoch + 1, 0, 0, {}
        self.skipped = 0


def training_state(
    task: str, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
    progress: Progress, *, schedule: str, config: dict[str, Any], tracking_run_id: str | None,
    metrics: dict[str, float], best: float | None, extra: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """The checkpoint dict of a run (see the module docstring): all an exact resume needs."""
    p = progress
    return {
        "task": task,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "scheduler": {"name": schedule, "lr": optimizer.param_groups[0]["lr"]},
        "epoch": p.epoch,
        "step": p.step,
        "epoch_batches": p.batch,
        "epoch_seen": p.seen,
        "epoch_sums": dict(p.sums),
        "epoch_skipped": p.skipped,
        "bad_in_row": p.bad_in_row,
        "rng": rng_state(),
        "config": config,
        "tracking_run_id": tracking_run_id,
        "metrics": metrics,
        "best": best,
        "extra": extra,
    }


def resume_state(ckpt_path: str | None, task: str) -> dict[str, Any] | None:
    """The checkpoint at ``ckpt_path`` to resume (None: a new run); it must be ``task``'s."""
    state = load_checkpoint(ckpt_path) if ckpt_path else None
    if state is not None and state.get("task") != task:
        raise ValueError(f"{ckpt_path} is a {state.get('task')!r} checkpoint, not {task!r}")
    return state


def restore(
    state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
) -> tuple[Progress, float | None, str | None]:  # fmt: skip
    """Weights, optimizer and scaler of a checkpoint into the run; its progress, best value and
    tracking run id (the RNG state is restored later, by :func:`set_rng_state`)."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    progress = Progress(
        state["epoch"],
        state["step"],
        state.get("epoch_batches", 0),
        state.get("epoch_seen", 0),
        dict(state.get("epoch_sums") or {}),
        state.get("epoch_skipped", 0),
        state.get("bad_in_row", 0),
    )
    return progress, state.get("best"), state.get("tracking_run_id")


def load_pretrained(model: nn.Module, weights: str, is_main: bool = True) -> None:
    """Start ``model`` from ``weights``: a file, an http(s) URL or a registered name, resolved
    as ``--weights`` is (a download goes to the cache once: rank 0 fetches, the others then
    find it; a failure on any rank stops every rank at once)."""
    from hrpose.hub import resolve_weights
    from hrpose.models import load_weights

    dist_utils.main_decides(lambda: str(resolve_weights(weights)))  # rank 0 downloads first
    path = dist_utils.all_succeed(lambda: resolve_weights(weights, quiet=not is_main))
    report = dist_utils.all_succeed(lambda: load_weights(model, path))
    if is_main:
        print(f"pretrained weights {weights}: {report.summary()}")
