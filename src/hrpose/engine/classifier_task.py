"""HRNet-C on an ImageNet-layout folder as a task of the shared training loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from hrpose.config.schema import ClassifierTrainConfig
from hrpose.data.imagenet import ImageFolder, TrainTransform, ValTransform, class_names
from hrpose.data.loaders import build_loader
from hrpose.engine import distributed as dist_utils
from hrpose.engine.loop import StepContext, StepOutput, TaskParts
from hrpose.evaluation.classification import TopkAccuracy
from hrpose.models import HRNetClassifier


def build_classifier_task(cfg: ClassifierTrainConfig, device: torch.device, info: Any) -> TaskParts:
    """Datasets, model, cross-entropy step and top-1/top-5 validation."""
    tr, va = cfg.dataloader.train_ds, cfg.dataloader.val_ds
    train = ImageFolder(
        Path(tr.root) / tr.split,
        TrainTransform(cfg.data.input_size, cfg.data.min_area, cfg.data.flip),
    )
    if len(train.classes) != cfg.model.num_classes:
        raise ValueError(
            f"{tr.root}/{tr.split} has {len(train.classes)} class folders but "
            f"model.num_classes={cfg.model.num_classes}: set --model.num_classes="
            f"{len(train.classes)}"
        )
    loader = build_loader(
        train,
        cfg.dataloader.batch_size,
        shuffle=cfg.dataloader.shuffle,
        num_workers=cfg.dataloader.num_workers,
        pin_memory=cfg.dataloader.pin_memory,
        drop_last=False,
        seed=cfg.setup.seed,
    )
    val_dir = Path(va.root) / va.split
    val = (
        ImageFolder(val_dir, ValTransform(cfg.data.input_size, cfg.data.resize_size))
        if val_dir.is_dir()
        else None
    )
    val_loader = None
    if val is not None:
        val_loader = build_loader(
            val,
            cfg.dataloader.val_batch_size or cfg.dataloader.batch_size,
            shuffle=False,
            num_workers=cfg.dataloader.num_workers,
        )
    model = HRNetClassifier(cfg.model.width, cfg.model.num_classes)
    criterion = nn.CrossEntropyLoss()

    def step(m: nn.Module, batch: Any, ctx: StepContext) -> StepOutput:
        images, labels = ctx.to_device(batch)
        loss = criterion(m(images).float(), labels)
        return StepOutput(loss, {}, images.shape[0])

    def validate(m: nn.Module, ctx: StepContext) -> dict[str, float]:
        if val_loader is None:
            return {}
        acc = TopkAccuracy((1, 5))
        for i, (images, labels) in enumerate(val_loader):
            if cfg.trainer.limit_val_batches and i >= cfg.trainer.limit_val_batches:
                break
            images, labels = ctx.to_device((images, labels))
            acc.update(m(images).float(), labels)
        hits = dist_utils.reduce_sum({**acc.hits, "count": acc.count})
        count = max(hits.pop("count"), 1)
        return {k: 100.0 * v / count for k, v in hits.items()}

    names = class_names(tr.root, train.classes)
    return TaskParts(
        model,
        loader,
        step,
        validate,
        "top1",
        extra={"classes": train.classes, "class_names": names},
    )
