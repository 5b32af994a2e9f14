"""The protocol record written next to every COCO evaluation: what exactly was measured."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hrpose import __version__
from hrpose.structures import InferenceSettings


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class ProtocolRecord:
    """Settings and provenance of one evaluation run. ``to_json`` writes every inference setting
    (:class:`~hrpose.structures.InferenceSettings`, their one definition) as a top-level field,
    next to the model record of the weights evaluated."""

    annotation_file: str
    num_images: int
    settings: InferenceSettings
    model_record: dict[str, Any] | None = None
    weights: str | None = None
    weights_sha256: str | None = None
    evaluator: str = "pycocotools"
    world_size: int = 1
    hrpose_version: str = __version__
    date: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    stats: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: the settings flattened to top-level keys (input_size, flip, ...)."""
        data = {
            f.name: getattr(self, f.name) for f in dataclass_fields(self) if f.name != "settings"
        }
        flat = {n: getattr(self.settings, n) for n in InferenceSettings.names()}
        flat["scales"] = list(self.settings.scales)
        return {"annotation_file": data.pop("annotation_file"),
                "num_images": data.pop("num_images"), **flat, **data}  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)
