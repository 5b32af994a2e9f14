"""``decode``: network outputs of one image -> People, equal to the official test path."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from hrpose.affine import Transform
from hrpose.decode.aggregate import HeatSource, TagSource, aggregate
from hrpose.decode.group import match_by_tag
from hrpose.decode.peaks import top_k
from hrpose.decode.refine import adjust, refine
from hrpose.skeleton import COCO17, KeypointSpec
from hrpose.structures import DecodeParams, People, PoseOutput


def _as_output(outputs: object) -> PoseOutput:
    if isinstance(outputs, PoseOutput):
        return outputs.check()
    out = list(outputs)  # type: ignore[call-overload]
    if len(out) != 2 or not all(isinstance(t, Tensor) for t in out):
        raise TypeError(
            "each outputs entry must be the model's output: a PoseOutput or [low, high] tensors"
        )
    return PoseOutput(out[0], out[1]).check()


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
        people = refine(people, heat, tags, tiled)
    return people, scores


def decode(
    outputs: Sequence[object],
    transforms: Sequence[Transform],
    *,
    flip_outputs: Sequence[object] | None = None,
    spec: KeypointSpec = COCO17,
    params: DecodeParams | None = None,
    use_cv2: bool | None = None,
    tiled: bool | None = None,
    **kwargs: object,
) -> People:
    """People in original image pixels from the network outputs of one preprocessed image.

    One entry per test scale (in ``params.scales`` order) in ``outputs`` (the model's output:
    PoseOutput or [low, high], batch 1), ``transforms`` (what :func:`preprocess` returned for
    that scale) and ``flip_outputs`` (the mirrored input's outputs; None: no flip test).
    ``kwargs`` override fields of ``params`` (e.g. ``refine=False``); ``tiled``/``use_cv2``
    choose how peaks are found (same people; see :func:`hrpose.decode.peaks.top_k`).
    """
    params = params or DecodeParams()
    if kwargs:
        params = DecodeParams.from_kwargs(**{**params.__dict__, **kwargs})
    scales = params.scales
    outs, tfs = list(outputs), list(transforms)
    flips: list[object | None] = (
        [None] * len(scales) if flip_outputs is None else list(flip_outputs)
    )
    if not len(outs) == len(tfs) == len(flips) == len(scales):
        raise ValueError(
            f"give one outputs, transforms (and flip_outputs) entry per scale {scales}; got "
            f"{len(outs)}, {len(tfs)}, {len(flips)}"
        )
    pose = [_as_output(o) for o in outs]
    if pose[0].low.shape[0] != 1:
        raise ValueError(f"decode takes one image (batch 1); got {tuple(pose[0].low.shape)}")
    if pose[0].num_joints != spec.num_joints:
        raise ValueError(
            f"the outputs have {pose[0].num_joints} joints, the keypoint spec "
            f"{spec.num_joints}: does the spec match the weights?"
        )
    order = sorted(range(len(scales)), key=lambda i: scales[i], reverse=True)
    per_scale = [
        (scales[i], pose[i], None if flips[i] is None else _as_output(flips[i])) for i in order
    ]
    base = tfs[scales.index(1.0)]
    with torch.no_grad():
        heat, tags = aggregate(per_scale, spec.flip_index, base.size)
        people, scores = decode_maps(heat, tags, spec, params, use_cv2, tiled)
    if len(people) == 0:
        return People.empty(spec.num_joints, tags.dim)
    # The official code maps back with the centre/scale of the last (smallest) scale it resized.
    last = tfs[order[-1]]
    xy = Transform(last.center, last.scale, base.size).to_image(people[:, :, :2])
    keypoints = np.concatenate([xy, people[:, :, 2:3].astype(np.float64)], axis=2)
    return People(
        keypoints.astype(np.float32),
        np.asarray(scores, np.float32),
        people[:, :, 3:].astype(np.float32),
    )
