"""Batch inference with Ray Data: a callable class for ``Dataset.map_batches`` that loads the
model once per worker and maps image rows to COCO result rows (one row per person).

    ds = ray.data.read_binary_files("images/", include_paths=True)
    people = ds.map_batches(PoseEstimator, fn_constructor_kwargs={"weights": "w.pt"},
                            compute=ray.data.ActorPoolStrategy(size=4), batch_size=8)

Rows with ``bytes`` (``read_binary_files``) are decoded as ``hrpose predict`` decodes files, so
the people are the same; rows with ``image`` (``read_images(mode="RGB")``) are used as given.
Ray itself is not imported here: the class is plain Python that Ray ships to its workers.
"""

from __future__ import annotations

import difflib
import logging
import zlib
from dataclasses import replace
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from hrpose.data.images import ImageReadError, decode_image
from hrpose.evaluation.coco_results import people_to_coco
from hrpose.loading import load_model
from hrpose.predict import Predictor
from hrpose.structures import InferenceSettings

log = logging.getLogger(__name__)

COLUMNS = ("image_id", "path", "category_id", "keypoints", "score", "bbox")


def image_id(path: str) -> int:
    """COCO image id of a file: a digit-named file keeps its number (COCO's names, as
    ``hrpose predict``); another gets a CRC-32 of its path, stable on every worker."""
    stem = PurePosixPath(str(path)).stem
    return int(stem) if stem.isdigit() else zlib.crc32(str(path).encode()) & 0x7FFFFFFF


def inference_settings(base: InferenceSettings, overrides: dict[str, Any]) -> InferenceSettings:
    """``base`` (the model record's settings) with ``overrides``; an unknown name is an error
    naming the close matches."""
    names = InferenceSettings.names()
    for key in overrides:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise TypeError(f"unknown inference setting {key!r}{hint} (known: {', '.join(names)})")
    return replace(base, **overrides)


class PoseEstimator:
    """Ray Data ``map_batches`` callable: image rows in, one COCO result row per person out.

    ``weights``: anything ``hrpose predict --weights`` takes (a file, URL, registered name or
    ``.onnx``); ``settings``: inference overrides of the model record (``input_size=512``,
    ``flip_test=True``, ...). ``skip_bad``: log and skip an unreadable image instead of failing
    the job. ``threads``: torch threads per worker (default: torch's own choice).
    """

    def __init__(
        self,
        weights: str,
        *,
        device: str = "cpu",
        skip_bad: bool = False,
        threads: int | None = None,
        **settings: Any,
    ) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        loaded = load_model(weights, device=device)
        params = inference_settings(loaded.record.inference, settings)
        self.predictor = Predictor.from_loaded(loaded, params=params, device=device)
        self.skip_bad = skip_bad

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One batch of rows (``path`` plus ``bytes`` or ``image``) -> columns of people."""
        paths = batch.get("path")
        images = batch.get("bytes", batch.get("image"))
        if images is None:
            raise KeyError(
                f"rows need a 'bytes' column (ray.data.read_binary_files) or an 'image' column "
                f"(ray.data.read_images(mode='RGB')); got {sorted(batch)}"
            )
        if paths is None:
            raise KeyError("rows need a 'path' column: pass include_paths=True to the reader")
        rows: list[dict] = []
        for path, item in zip(paths, images, strict=True):
            try:
                image = self._image(item, str(path))
            except ImageReadError as err:
                if not self.skip_bad:
                    raise
                log.warning("skipped %s", err)
                continue
            people = self.predictor.predict(image).people
            for row in people_to_coco(people, image_id(str(path))):
                rows.append({**row, "path": str(path)})
        return self._columns(rows)

    @staticmethod
    def _image(item: Any, name: str) -> np.ndarray:
        if isinstance(item, bytes | bytearray):
            return decode_image(item, name)
        image = np.asarray(item)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ImageReadError(
                f"{name}: expected an (H, W, 3) uint8 RGB image, got {image.dtype} "
                f"{image.shape}; read with ray.data.read_images(..., mode='RGB')"
            )
        return image

    def _columns(self, rows: list[dict]) -> dict[str, np.ndarray]:
        k3 = 3 * self.predictor.spec.num_joints
        return {
            "image_id": np.array([r["image_id"] for r in rows], np.int64),
            "path": np.array([r["path"] for r in rows], dtype=object),
            "category_id": np.array([r["category_id"] for r in rows], np.int64),
            "keypoints": np.array([r["keypoints"] for r in rows], np.float64).reshape(-1, k3),
            "score": np.array([r["score"] for r in rows], np.float64),
            "bbox": np.array([r["bbox"] for r in rows], np.float64).reshape(-1, 4),
        }


def to_coco(row: dict[str, Any]) -> dict[str, Any]:
    """A row of the output dataset as a plain COCO result (lists, Python numbers), e.g. for
    ``json.dump`` of ``[to_coco(r) for r in people.iter_rows()]``."""
    return {
        "image_id": int(row["image_id"]),
        "category_id": int(row["category_id"]),
        "keypoints": [float(v) for v in np.asarray(row["keypoints"]).reshape(-1)],
        "score": float(row["score"]),
        "bbox": [float(v) for v in np.asarray(row["bbox"]).reshape(-1)],
    }
