"""Importing the official HigherHRNet code from a local checkout (``HRPOSE_OFFICIAL``) for the
side-by-side benchmarks: its ``lib/`` on the path, the numpy aliases it still uses, and the one
table it needs from its dataset package (which would pull in training-only dependencies)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np

from hrpose.skeleton import COCO17


def add_official_lib(root: str | Path) -> Path:
    """Make ``core``, ``utils`` and ``models`` of the official checkout at ``root`` importable."""
    lib = Path(root) / "lib"
    if not lib.is_dir():
        raise SystemExit(f"HRPOSE_OFFICIAL={root}: no lib/ folder (expected the official checkout)")
    sys.path.insert(0, str(lib))
    for alias, real in (("float", float), ("int", int), ("bool", bool)):
        if not hasattr(np, alias):
            setattr(np, alias, real)
    shim = types.ModuleType("dataset.transforms")
    shim.FLIP_CONFIG = {"COCO": list(COCO17.flip_index)}
    sys.modules.setdefault("dataset", types.ModuleType("dataset"))
    sys.modules["dataset.transforms"] = shim
    return lib
