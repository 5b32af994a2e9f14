"""HRNet-C on an ImageNet-layout folder as a task of the shared training loop.

The task receives built objects and plain values (cli/train.py wires them from the config).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from hrpose.engine import distributed as dist_utils
from hrpose.engine.loop import StepContext, StepOutput, TaskParts
from hrpose.evaluation.classification import TopkAccuracy


def build_classifier_task(
    model: nn.Module,
    loader: Any,
    val_loader: Any | None,
    classes: list[str],
    class_names: list[str],
    limit_val_batches: int | None = None,
) -> TaskParts:
    """Cross-entropy step and top-1/top-5 validation.

    ``val_loader`` shards without padding under DDP (build_loader's ``pad=False``), so the
    summed counts cover every validation image exactly once.
    """
    criterion = nn.CrossEntropyLoss()

    def step(m: nn.Module, batch: Any, ctx: StepContext) -> StepOutput:
        images, labels = ctx.to_device(batch)
        loss = criterion(m(images).float(), labels)
        return StepOutput(loss, {}, images.shape[0])

    def validate(m: nn.Module, ctx: StepContext) -> dict[str, float]:
        assert val_loader is not None
        acc = TopkAccuracy((1, 5))
        for i, (images, labels) in enumerate(val_loader):
            if limit_val_batches and i >= limit_val_batches:
                break
            images, labels = ctx.to_device((images, labels))
            acc.update(m(images).float(), labels)
        hits = dist_utils.reduce_sum({**acc.hits, "count": acc.count})
        count = max(hits.pop("count"), 1)
        return {k: 100.0 * v / count for k, v in hits.items()}

    return TaskParts(
        model,
        loader,
        step,
        validate if val_loader is not None else None,
        "top1",
        extra={"classes": classes, "class_names": class_names},
    )
