"""Checkpoints: versioned plain dicts, written atomically (temp file + os.replace).

Format (``FORMAT_VERSION`` 1)::

    {"format_version": 1, "task": "pose"|"classifier", "model": state_dict,
     "optimizer": state_dict, "scheduler": {...schedule params...}, "scaler": state_dict|None,
     "epoch": epochs completed, "step": optimizer steps done, "rng": {...},
     "epoch_batches"/"epoch_seen"/"epoch_sums": progress inside an interrupted epoch (0 at a
     boundary; older files without them resume at the boundary),
     "config": nested dict, "tracking_run_id": str|None, "metrics": {...}, "best": float|None,
     "extra": {...task data, e.g. class names...}}

A file with only ``model`` (or an official state dict) is loaded for weights, never resumed.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically: a crash mid-write never leaves a broken file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format_version": FORMAT_VERSION, **state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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


def run_dir_of(ckpt_path: str | Path) -> Path:
    """The run folder of ``.../<run>/checkpoints/last.pt``; resumed runs write there again."""
    path = Path(ckpt_path).resolve()
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent
