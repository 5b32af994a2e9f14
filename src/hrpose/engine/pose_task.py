"""HigherHRNet on COCO keypoints as a task of the shared training loop.

The task receives built objects and plain values (cli/train.py wires them from the config):
the step is forward + loss, validation is COCO AP of a Predictor over the validation split,
and every validation also draws a few of its images (skeletons, heatmaps, tags). Unreadable
images are skipped and counted (:mod:`hrpose.engine.bad_samples`): in training the loader
(``bad_samples="replace"``) substitutes another sample; validation leaves them out of the AP
and reports their number as ``bad_images``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrpose.data.coco import UnreadableSample, read_image_rgb
from hrpose.data.loaders import SampleBatch
from hrpose.engine import distributed as dist_utils
from hrpose.engine.bad_samples import BadSampleCounter, report_validation
from hrpose.engine.loop import StepContext, StepOutput, TaskParts
from hrpose.evaluation.coco_eval import evaluate_keypoints
from hrpose.evaluation.pose import image_list, predict_images
from hrpose.losses import HigherHRNetLoss
from hrpose.normalization import normalize_batch
from hrpose.predict import Predictor
from hrpose.record import ModelRecord
from hrpose.sharding import shard
from hrpose.viz.draw import draw_people, heatmap_grid, tag_plot


@dataclass(frozen=True)
class PoseValidation:
    """How to validate: the COCO split, how much of it, how many pictures (the inference
    settings are the model record's, the same a checkpoint of the run carries)."""

    annotation_file: Path
    images_dir: Path
    limit: int | None = None  # first N images only; None = all
    pictures: int = 2  # images drawn at every validation (0 = none)


def build_pose_task(
    model: torch.nn.Module,
    loader: Any,
    loss_fn: HigherHRNetLoss,
    record: ModelRecord,
    validation: PoseValidation | None,
    info: dist_utils.DistInfo,
    max_bad_fraction: float = 0.001,
    num_files: int | None = None,
) -> TaskParts:
    """Step (forward + the official loss) and COCO-AP validation for ``hrpose train pose``;
    ``record`` (architecture, keypoint set, inference settings, provenance) goes into every
    checkpoint and sets how validation decodes.

    ``loader`` yields :class:`SampleBatch` es (``build_loader(bad_samples="replace")``) or plain
    batches; training stops when its unreadable files pass ``max_bad_fraction`` of ``num_files``
    (default: the loader's dataset size). Under DDP each rank predicts one contiguous run of the
    validation images (:func:`hrpose.sharding.shard`), without the padding a DistributedSampler
    adds, so rank 0 evaluates each image exactly once, in the one-process order.
    """
    if num_files is None:
        num_files = len(loader.dataset) if loader is not None else 1
    bad = BadSampleCounter(num_files, max_bad_fraction)
    val_bad: dict[str, None] = {}  # validation files already named in the log

    def step(m: torch.nn.Module, batch: Any, ctx: StepContext) -> StepOutput:
        if isinstance(batch, SampleBatch):
            bad.update(batch.skipped)
            batch = batch.data
        image, heatmaps, masks, joints = ctx.to_device(batch)
        outputs = m(normalize_batch(image, ctx.channels_last))
        total, parts = loss_fn(list(outputs), heatmaps, masks, joints)
        return StepOutput(total, parts, image.shape[0])

    def todo() -> list[tuple[int, str]]:
        assert validation is not None
        return image_list(validation.annotation_file)[: validation.limit]

    def predictor(m: torch.nn.Module, ctx: StepContext) -> Predictor:
        assert validation is not None
        return Predictor(m, record=record, device=ctx.device)

    def validate(m: torch.nn.Module, ctx: StepContext) -> dict[str, float]:
        images = todo()
        skipped: list[str] = []
        mine = predict_images(predictor(m, ctx), shard(images, info.rank, info.world_size),
                              validation.images_dir, skipped=skipped)  # type: ignore[union-attr]  # fmt: skip
        parts = dist_utils.gather_objects((mine, skipped))
        results = [r for part, _ in parts for r in part]  # type: ignore[misc]
        unreadable = {f for _, names in parts for f in names}  # type: ignore[misc]
        stats: dict[str, float] = {}
        if info.is_main:
            ids = [i for i, name in images if str(validation.images_dir / name) not in unreadable]  # type: ignore[union-attr]
            if ids:
                stats, _ = evaluate_keypoints(results, validation.annotation_file, image_ids=ids)  # type: ignore[union-attr]
            stats.update(report_validation(unreadable, val_bad, len(images)))
        return dict(dist_utils.broadcast_object(stats))  # type: ignore[arg-type]

    def val_images(m: torch.nn.Module, ctx: StepContext) -> dict[str, np.ndarray]:
        assert validation is not None
        return validation_pictures(predictor(m, ctx), todo()[: validation.pictures],
                                   validation.images_dir)  # fmt: skip

    def sample_image(batch: Any) -> np.ndarray:
        if isinstance(batch, SampleBatch):
            batch = batch.data
        return batch[0][0].cpu().numpy()  # (H, W, 3) uint8 RGB, as the loader yields it

    usable = validation is not None and validation.annotation_file.is_file()
    return TaskParts(
        model,
        loader,
        step,
        validate if usable else None,
        "AP",
        sample_image,
        val_images if usable and validation.pictures else None,  # type: ignore[union-attr]
        extra={"model_record": record.to_dict()},
    )


def validation_pictures(
    predictor: Predictor, images: list[tuple[int, str]], images_dir: Path
) -> dict[str, np.ndarray]:
    """Per image: predicted skeletons, the 1/2-resolution heatmaps and the people's tags (RGB);
    an unreadable image is left out (validation counts it)."""
    names = list(predictor.spec.names)
    out: dict[str, np.ndarray] = {}
    for _, file_name in images:
        try:
            image = read_image_rgb(images_dir / file_name)
        except UnreadableSample:
            continue
        pred = predictor.predict(image)
        stem = Path(file_name).stem
        out[f"{stem}_people"] = draw_people(image, pred.people, predictor.spec)
        heat = pred.outputs[-1][0, : len(names)].cpu().numpy()
        out[f"{stem}_heatmaps"] = heatmap_grid(image, heat, names, transform=pred.transform)
        out[f"{stem}_tags"] = tag_plot(pred.people, names)
    return out
