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


def people_as_annotations(
    people: People, image_id: int, first_id: int, joint_threshold: float, category_id: int = 1
) -> list[dict]:
    """People (e.g. a reference model's) as COCO ground-truth annotations: joints scoring at
    least ``joint_threshold`` are labelled visible, the area is the box of those joints (COCO's
    segment area is unknown; OKS reads it as the person's scale). People without such joints
    are left out; ids count up from ``first_id``."""
    kp = np.asarray(people.keypoints, np.float64)  # (P, K, 3)
    visible = kp[:, :, 2] >= joint_threshold
    out = []
    for joints, vis in zip(kp, visible, strict=True):
        if not vis.any():
            continue
        lo, hi = joints[vis, :2].min(0), joints[vis, :2].max(0)
        w, h = np.maximum(hi - lo, 1.0)
        values = np.concatenate([joints[:, :2] * vis[:, None], 2.0 * vis[:, None]], 1)
        out.append({
            "id": first_id + len(out),
            "image_id": int(image_id),
            "category_id": int(category_id),
            "keypoints": [round(float(v), 3) for v in values.reshape(-1)],
            "num_keypoints": int(vis.sum()),
            "area": float(w * h),
            "bbox": [float(lo[0]), float(lo[1]), float(w), float(h)],
            "iscrowd": 0,
        })  # fmt: skip
    return out
