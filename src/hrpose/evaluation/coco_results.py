"""Pure conversions between People and COCO keypoint result dicts (official result format)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hrpose.structures import People


def people_to_coco(people: People, image_id: int, category_id: int = 1) -> list[dict]:
    """One COCO result per person: 3K keypoint values (x, y, joint score), person score, bbox.

    As the official code: ``score`` is the person score (mean joint score), each keypoint's third
    value its joint score; nothing is rescored or suppressed.
    """
    out = []
    for kp, score in zip(people.keypoints, people.scores, strict=True):
        kp = np.asarray(kp, np.float64)
        lo, hi = kp[:, :2].min(0), kp[:, :2].max(0)
        out.append(
            {
                "image_id": int(image_id),
                "category_id": int(category_id),
                "keypoints": [round(float(v), 3) for v in kp.reshape(-1)],
                "score": float(score),
                "bbox": [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])],
            }
        )
    return out


def annotations_as_results(coco: Mapping, score: float = 1.0) -> list[dict]:
    """The ground-truth people of a COCO keypoints dict as results (every labelled keypoint)."""
    out = []
    for ann in coco["annotations"]:
        if ann.get("iscrowd", 0) or ann.get("num_keypoints", 0) == 0:
            continue
        out.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "keypoints": [float(v) for v in ann["keypoints"]],
                "score": score,
            }
        )
    return out
