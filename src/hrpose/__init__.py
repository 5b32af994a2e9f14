"""hrpose: multi-person pose estimation with HigherHRNet in PyTorch.

Importing hrpose has no side effects and imports nothing heavy: ``hrpose.load_model`` (any
model file -> network + model record, see :mod:`hrpose.loading`) is resolved on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_model"]


def __getattr__(name: str) -> Any:
    # Resolved by name, not imported here: the package root stays at the bottom layer (record
    # and others import __version__), while load_model lives in the inference layer.
    if name == "load_model":
        return importlib.import_module("hrpose.loading").load_model
    raise AttributeError(f"module 'hrpose' has no attribute {name!r}")
