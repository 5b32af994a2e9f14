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


class Cfg(dict):
    """The official code's yacs config, as a dict read by attribute."""

    __getattr__ = dict.__getitem__


def test_config(**model: object) -> Cfg:
    """The official COCO test settings (flip, adjust + refine, thresholds 0.1 / 1.0, 30 people)
    for its ``HeatmapParser`` and post-processing; ``model`` fills the MODEL section."""
    return Cfg(
        MODEL=Cfg(TAG_PER_JOINT=True, **model),
        DATASET=Cfg(NUM_JOINTS=17, MAX_NUM_PEOPLE=30, WITH_CENTER=False, DATASET="coco_kpt"),
        LOSS=Cfg(WITH_HEATMAPS_LOSS=[True, True], WITH_AE_LOSS=[True, False]),
        TEST=Cfg(DETECTION_THRESHOLD=0.1, TAG_THRESHOLD=1.0, USE_DETECTION_VAL=True,
                 IGNORE_TOO_MUCH=False, NMS_KERNEL=5, NMS_PADDING=2, WITH_HEATMAPS=(True, True),
                 WITH_AE=(True, False), PROJECT2IMAGE=True, FLIP_TEST=True, SCALE_FACTOR=[1],
                 ADJUST=True, REFINE=True),
    )  # fmt: skip
