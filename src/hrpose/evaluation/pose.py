"""COCO keypoint evaluation of a predictor over every image of an annotation file."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from hrpose.data.coco import UnreadableSample, read_image_rgb
from hrpose.evaluation.coco_results import people_to_coco
from hrpose.progress import progress as bar
from hrpose.structures import People


def image_list(annotation_file: str | Path) -> list[tuple[int, str]]:
    """(image id, file name) of every image in a COCO annotation file, by id."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(annotation_file))
    return [(i, coco.imgs[i]["file_name"]) for i in sorted(coco.getImgIds())]


def predict_images(
    predict: Callable, images: Sequence[tuple[int, str]], images_dir: str | Path,
    progress: bool = False, skipped: list[str] | None = None,
) -> list[dict]:  # fmt: skip
    """COCO results of ``predict(rgb) -> People`` over (id, file name) images. An unreadable
    image raises :class:`UnreadableSample`, or, given a ``skipped`` list, is appended to it and
    left out (training's validation counts them)."""
    results: list[dict] = []
    for image_id, name in bar(images, "evaluating", "img", enabled=progress):
        try:
            image = read_image_rgb(Path(images_dir) / name)
        except UnreadableSample as e:
            if skipped is None:
                raise
            skipped.append(e.path)
            continue
        people: People = predict(image)
        results += people_to_coco(people, image_id)
    return results


def write_results(results: list[dict], path: str | Path) -> Path:
    """Results JSON, written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results))
    tmp.replace(path)
    return path
