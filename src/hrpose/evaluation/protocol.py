"""The protocol record written next to every COCO evaluation: what exactly was measured."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hrpose import __version__
from hrpose.structures import DecodeParams


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class ProtocolRecord:
    """Settings and provenance of one evaluation run; the decode fields carry
    :class:`~hrpose.structures.DecodeParams`' names (build with :meth:`from_params`)."""

    annotation_file: str
    num_images: int
    input_size: int
    flip: bool
    scales: list[float]
    adjust: bool
    refine: bool
    detection_threshold: float
    tag_threshold: float
    max_people: int
    nms_kernel: int
    weights: str | None = None
    weights_sha256: str | None = None
    evaluator: str = "pycocotools"
    hrpose_version: str = __version__
    date: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    stats: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: DecodeParams, **fields: Any) -> ProtocolRecord:
        """A record whose decode fields are taken, by name, from ``params``."""
        names = {f.name for f in dataclass_fields(cls)} & set(DecodeParams.names())
        decode = {n: getattr(params, n) for n in names}
        decode["scales"] = list(params.scales)
        return cls(**decode, **fields)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)
