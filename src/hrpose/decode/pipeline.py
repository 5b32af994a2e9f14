"""``decode``: network outputs of one image -> People, equal to the official test path."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import torch
from torch import Tensor

from hrpose.decode.aggregate import HeatSource, TagSource, aggregate
from hrpose.decode.group import match_by_tag
from hrpose.decode.peaks import top_k
from hrpose.decode.preprocess import Transform, input_size_for
from hrpose.decode.refine import adjust, refine
from hrpose.skeleton import COCO17, KeypointSpec
from hrpose.structures import People


@dataclass(frozen=True)
class DecodeParams:
    """Decoder settings; defaults are the official COCO test settings."""

    detection_threshold: float = 0.1
    tag_threshold: float = 1.0
    max_people: int = 30
    nms_kernel: int = 5
    adjust: bool = True
    refine: bool = True
    flip: bool = True
    scales: tuple[float, ...] = field(default=(1.0,))
    use_detection_val: bool = True
    ignore_too_much: bool = False

    def __post_init__(self) -> None:
        if self.nms_kernel < 1 or self.nms_kernel % 2 == 0:
            raise ValueError(f"nms_kernel must be a positive odd number, got {self.nms_kernel}")
        if self.detection_threshold < 0:
            raise ValueError(
                f"detection_threshold must be >= 0 (heatmap values), got {self.detection_threshold}"
            )
        if self.max_people < 1:
            raise ValueError("max_people must be >= 1")
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if not self.scales or 1.0 not in self.scales:
            raise ValueError(f"scales must include 1.0 (its tags are used), got {self.scales}")

    @classmethod
    def from_kwargs(cls, **kwargs: object) -> DecodeParams:
        """Build from keyword arguments, naming unknown ones."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(f"unknown decode parameter(s) {unknown}; known: {sorted(names)}")
        return cls(**kwargs)  # type: ignore[arg-type]


def _as_list(outputs: object) -> list[Tensor]:
    if isinstance(outputs, Tensor):
        return [outputs]
    out = list(outputs)  # type: ignore[call-overload]
    if not out or not all(isinstance(t, Tensor) for t in out):
        raise TypeError("outputs must be a tensor or a sequence of tensors (the model's output)")
    if out[0].dim() != 4 or out[0].shape[0] != 1:
        raise ValueError(
            f"decode takes one image (batch 1); got output shape {tuple(out[0].shape)}"
        )
    return out


def decode_maps(
    heat: HeatSource,
    tags: TagSource,
    spec: KeypointSpec,
    params: DecodeParams,
    use_cv2: bool | None = None,
    tiled: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Final heatmaps and tags -> people (P, K, 3 + T) in map pixels, and scores.

    Everything but the grouping runs on the maps' device. ``tiled``/``use_cv2`` choose the peak
    search (:func:`hrpose.decode.peaks.top_k`); all choices give the same people.
    """
    tag_k, loc_k, val_k = top_k(
        heat, tags, params.max_people, params.nms_kernel, params.detection_threshold, use_cv2,
        tiled,
    )  # fmt: skip
    people = match_by_tag(
        tag_k, loc_k, val_k, spec.grouping_order, params.detection_threshold,
        params.tag_threshold, params.max_people, params.use_detection_val, params.ignore_too_much,
    )  # fmt: skip
    if params.adjust:
        people = adjust(people, heat)
    scores = people[:, :, 2].mean(axis=1) if len(people) else np.zeros(0, np.float32)
    if params.refine and len(people):
        people = refine(people, heat, tags)
    return people, scores


def decode(
    outputs: object,
    *,
    image_size: tuple[int, int],
    input_size: int = 512,
    flip_outputs: object | None = None,
    spec: KeypointSpec = COCO17,
    params: DecodeParams | None = None,
    use_cv2: bool | None = None,
    tiled: bool | None = None,
    **kwargs: object,
) -> People:
    """People in original image pixels from the network outputs of one preprocessed image.

    ``outputs``: the model's outputs (PoseOutput or a sequence, lowest resolution first) for
    the image preprocessed at scale 1 — or a list of such outputs, one per entry of
    ``params.scales``. ``flip_outputs``: the same for the mirrored input (flip test), or None.
    ``image_size``: (width, height) of the original image. Keyword ``kwargs`` override fields of
    ``params`` (e.g. ``refine=False``).
    """
    params = params or DecodeParams()
    if kwargs:
        params = DecodeParams.from_kwargs(**{**params.__dict__, **kwargs})
    scales = params.scales
    multi = len(scales) > 1
    outs = list(outputs) if multi else [outputs]  # type: ignore[call-overload]
    if flip_outputs is None:
        flips: list[object | None] = [None] * len(scales)
    else:
        flips = list(flip_outputs) if multi else [flip_outputs]  # type: ignore[call-overload]
    if len(outs) != len(scales) or len(flips) != len(scales):
        raise ValueError(f"give one outputs entry per scale {scales}, got {len(outs)}")
    k = spec.num_joints
    order = sorted(range(len(scales)), key=lambda i: scales[i], reverse=True)
    min_scale = min(scales)
    per_scale = [
        (scales[i], _as_list(outs[i]), None if flips[i] is None else _as_list(flips[i]))
        for i in order
    ]
    base_size, center, scale = input_size_for(image_size, input_size, 1.0, min_scale)
    with torch.no_grad():
        heat, tags = aggregate(per_scale, k, base_size, spec.flip_index)
        people, scores = decode_maps(heat, tags, spec, params, use_cv2, tiled)
    if len(people) == 0:
        return People.empty(k, tags.dim)
    # The official code maps back with the centre/scale of the last (smallest) scale it resized.
    _, center, scale = input_size_for(image_size, input_size, scales[order[-1]], min_scale)
    transform = Transform(center, scale, base_size)
    xy = transform.to_image(people[:, :, :2].astype(np.float64))
    keypoints = np.concatenate([xy, people[:, :, 2:3].astype(np.float64)], axis=2)
    return People(
        keypoints.astype(np.float32),
        np.asarray(scores, np.float32),
        people[:, :, 3:].astype(np.float32),
    )
