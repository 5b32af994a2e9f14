"""Grouping joint candidates into people by their tags (official ``match_by_tag``).

Joints are visited in the official order (COCO: head, shoulders, hips, then limbs). Candidates
of the first joint start people; each later joint's candidates are matched to the people so far
with the Munkres assignment on ``round(tag distance) * 100 - score``, accepted when the distance
is below the tag threshold; the rest start new people. People keep their creation order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hrpose.decode.munkres import munkres


def match_by_tag(
    tag_k: np.ndarray,
    loc_k: np.ndarray,
    val_k: np.ndarray,
    joint_order: Sequence[int],
    detection_threshold: float = 0.1,
    tag_threshold: float = 1.0,
    max_people: int = 30,
    use_detection_val: bool = True,
    ignore_too_much: bool = False,
) -> np.ndarray:
    """(P, K, 3 + T) float32 people: x, y, score, tag per joint (zeros where not found).

    ``tag_k`` (K, k, T), ``loc_k`` (K, k, 2) x, y, ``val_k`` (K, k): the top-k candidates.
    """
    num_joints, _, tag_dim = tag_k.shape
    default = np.zeros((num_joints, 3 + tag_dim))
    joint_dict: dict[float, np.ndarray] = {}
    tag_dict: dict[float, list[np.ndarray]] = {}
    for i, idx in enumerate(joint_order):
        tags = tag_k[idx]
        joints = np.concatenate((loc_k[idx], val_k[idx, :, None], tags), 1)
        keep = joints[:, 2] > detection_threshold
        tags, joints = tags[keep], joints[keep]
        if joints.shape[0] == 0:
            continue
        if i == 0 or not joint_dict:
            for tag, joint in zip(tags, joints, strict=True):
                key = tag[0]
                joint_dict.setdefault(key, np.copy(default))[idx] = joint
                tag_dict[key] = [tag]
            continue
        grouped_keys = list(joint_dict)[:max_people]
        if ignore_too_much and len(grouped_keys) == max_people:
            continue
        # Mean tag per person, computed as the reference does (float32, numpy's summation order).
        grouped_tags = np.array([np.mean(tag_dict[k], axis=0) for k in grouped_keys])
        diff = joints[:, None, 3:] - grouped_tags[None, :, :]
        dist = np.linalg.norm(diff, ord=2, axis=2)
        cost = np.round(dist) * 100 - joints[:, 2:3] if use_detection_val else dist.copy()
        num_added, num_grouped = dist.shape
        if num_added > num_grouped:
            cost = np.concatenate((cost, np.zeros((num_added, num_added - num_grouped)) + 1e10), 1)
        for row, col in munkres(cost):
            if row < num_added and col < num_grouped and dist[row, col] < tag_threshold:
                key = grouped_keys[col]
                joint_dict[key][idx] = joints[row]
                tag_dict[key].append(tags[row])
            else:
                key = tags[row][0]
                joint_dict.setdefault(key, np.copy(default))[idx] = joints[row]
                tag_dict[key] = [tags[row]]
    if not joint_dict:
        return np.zeros((0, num_joints, 3 + tag_dim), np.float32)
    return np.array(list(joint_dict.values())).astype(np.float32)
