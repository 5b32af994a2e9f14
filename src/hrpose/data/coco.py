"""COCO-format person keypoints (pycocotools): image, keypoints (N, K, 3) and the loss mask.

As the official ``CocoKeypoints``: training uses images with at least one person annotation;
the mask is False on crowd regions and on persons without keypoints (True where the loss counts);
crowd annotations without keypoints are not people. No augmentation here: a transform is passed in.
The keypoint set (COCO-17, CrowdPose-14 or another) is read from the file: see
:func:`keypoint_spec_of`. CrowdPose files have no segmentations, so nothing is masked there (as
the official ``CrowdPoseKeypoints``, whose mask is all True).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hrpose.data.images import ImageReadError, read_image
from hrpose.skeleton import BUILTIN_SPECS, KeypointSpec

log = logging.getLogger(__name__)


class DatasetError(RuntimeError):
    """A dataset file that is missing or unreadable; the message names it and the fix."""


class UnreadableSample(DatasetError):
    """One sample's image is missing, unreadable or truncated; ``path`` names the file. A loader
    built with ``bad_samples="replace"`` or ``"drop"`` skips it (:mod:`hrpose.data.loaders`)."""

    def __init__(self, message: str, path: str | Path) -> None:
        super().__init__(message)
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return type(self), (str(self), self.path)


@dataclass
class PoseSample:
    """One annotated image before augmentation."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    keypoints: np.ndarray  # (N, K, 3) float32 x, y, visibility
    mask: np.ndarray  # (H, W) bool, True where the loss counts
    image_id: int
    file_name: str


def coco_paths(root: str | Path, split: str, ann_file: str | None = None,
               images_dir: str | None = None) -> tuple[Path, Path]:  # fmt: skip
    """Annotation file and image folder of a COCO split under ``root`` (official layout)."""
    root = Path(root)
    ann = root / (ann_file or f"annotations/person_keypoints_{split}.json")
    images = root / (images_dir or f"images/{split}")
    return ann, images


def read_image_rgb(path: str | Path) -> np.ndarray:
    """:func:`hrpose.data.images.read_image` (EXIF orientation ignored: COCO annotations use raw
    pixels) with its problems raised as :class:`UnreadableSample`, a :class:`DatasetError`."""
    try:
        return read_image(path)
    except ImageReadError as e:
        raise UnreadableSample(f"image file missing, unreadable or corrupt: {e}", path) from None


class CocoKeypoints:
    """Indexable COCO keypoints split; ``transform(sample)`` (if given) makes the item."""

    def __init__(
        self,
        ann_file: str | Path,
        images_dir: str | Path,
        *,
        transform: Callable[[PoseSample], Any] | None = None,
        train: bool = True,
        skip_missing: bool = False,
    ) -> None:
        from pycocotools.coco import COCO

        ann_file, images_dir = Path(ann_file), Path(images_dir)
        if not ann_file.is_file():
            root = ann_file.parent.parent
            raise DatasetError(
                f"annotation file not found: {ann_file}. Expected the COCO layout "
                "<root>/annotations/person_keypoints_<split>.json and <root>/images/<split>/; "
                f"download it with: hrpose prepare coco --root {root}"
            )
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO(str(ann_file))
        try:
            self.spec: KeypointSpec = keypoint_spec_of(self.coco.dataset)
        except DatasetError as e:
            raise DatasetError(f"{ann_file}: {e}") from None
        ids = sorted(self.coco.getImgIds())
        if train:
            ids = [i for i in ids if self.coco.getAnnIds(imgIds=i, iscrowd=None)]
        self.ids = ids
        self.images_dir = images_dir
        self.transform = transform
        self.skip_missing = skip_missing
        self.skipped: list[str] = []
        if skip_missing:
            present = []
            for i in self.ids:
                name = self.coco.imgs[i]["file_name"]
                if (images_dir / name).is_file():
                    present.append(i)
                else:
                    self.skipped.append(name)
            if self.skipped:
                log.warning("skipping %d images missing from %s", len(self.skipped), images_dir)
            self.ids = present
        if not self.ids:
            raise DatasetError(f"no usable images in {ann_file} (images folder {images_dir})")

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        return self.images_dir / self.coco.imgs[self.ids[index]]["file_name"]

    def load(self, index: int) -> PoseSample:
        """The raw sample: image, keypoints of people (not crowds), mask."""
        img_id = self.ids[index]
        info = self.coco.imgs[img_id]
        image = read_image_rgb(self.images_dir / info["file_name"])
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=img_id))
        mask = ignore_mask(anns, info["height"], info["width"])
        people = [a for a in anns if a.get("iscrowd", 0) == 0 or a.get("num_keypoints", 0) > 0]
        k = self.spec.num_joints
        kps = np.zeros((len(people), k, 3), np.float32)
        for i, a in enumerate(people):
            if a.get("keypoints"):
                kps[i] = np.asarray(a["keypoints"], np.float32).reshape(k, 3)
        return PoseSample(image, kps, mask, img_id, info["file_name"])

    def __getitem__(self, index: int) -> Any:
        sample = self.load(index)
        return self.transform(sample) if self.transform else sample


def keypoint_spec_of(dataset: Mapping) -> KeypointSpec:
    """The keypoint set of a COCO-format keypoints dict, checked against its annotations.

    From ``categories[0]`` (names, skeleton; see ``KeypointSpec.from_coco_category``), or, for a
    file whose category lists no keypoints, the built-in set with the annotations' joint count.
    """
    cats = dataset.get("categories") or []
    lengths = np.array([len(a.get("keypoints") or ()) for a in dataset.get("annotations", ())])
    if cats and cats[0].get("keypoints"):
        spec = KeypointSpec.from_coco_category(cats[0])
    else:
        counts = sorted(set((lengths[lengths > 0] // 3).tolist()))
        by_count = {s.num_joints: s for s in BUILTIN_SPECS.values()}
        if len(counts) != 1 or counts[0] not in by_count:
            raise DatasetError(
                "categories[0] has no 'keypoints' list and the annotations' keypoint counts "
                f"{counts} match no built-in set ({sorted(by_count)} joints); add the keypoint "
                "names to categories[0]"
            )
        spec = by_count[counts[0]]
        log.warning("no keypoint names in the file: assuming %d joints", spec.num_joints)
    wrong = np.flatnonzero((lengths > 0) & (lengths != 3 * spec.num_joints))
    if wrong.size:
        ann = dataset["annotations"][int(wrong[0])]
        raise DatasetError(
            f"{wrong.size} annotation(s) do not have 3 x {spec.num_joints} keypoint values, e.g. "
            f"id {ann.get('id')} has {lengths[wrong[0]]}; categories[0] lists {spec.num_joints} "
            "keypoints: fix the file or its categories[0].keypoints"
        )
    return spec


def ignore_mask(anns: list[dict], height: int, width: int) -> np.ndarray:
    """(H, W) bool, False on crowd regions and on persons annotated without keypoints.

    The regions are merged as run-length encodings and decoded once (images without any such
    region, the common case, decode nothing).
    """
    from pycocotools import mask as mask_utils

    rles: list = []
    for a in anns:
        if a.get("iscrowd", 0) and a.get("segmentation"):
            rle = mask_utils.frPyObjects(a["segmentation"], height, width)
            rles.extend(rle if isinstance(rle, list) else [rle])
        elif a.get("num_keypoints", 0) == 0 and a.get("segmentation"):
            rles.extend(mask_utils.frPyObjects(a["segmentation"], height, width))
    if not rles:
        return np.ones((height, width), bool)
    return mask_utils.decode(mask_utils.merge(rles, intersect=False)) == 0
