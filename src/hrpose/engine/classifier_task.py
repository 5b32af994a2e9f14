"""HRNet-C on an ImageNet-layout folder as a task of the shared training loop.

The task receives built objects and plain values (cli/train.py wires them from the config).
Unreadable images are skipped and counted (:mod:`hrpose.engine.bad_samples`): the training
loader replaces them, the validation loader drops them; validation reports ``bad_images``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from hrpose.data.loaders import SampleBatch
from hrpose.engine import distributed as dist_utils
from hrpose.engine.bad_samples import BadSampleCounter, report_validation
from hrpose.engine.loop import StepContext, StepOutput, TaskParts
from hrpose.evaluation.classification import TopkAccuracy


def build_classifier_task(
    model: nn.Module,
    loader: Any,
    val_loader: Any | None,
    classes: list[str],
    class_names: list[str],
    limit_val_batches: int | None = None,
    max_bad_fraction: float = 0.001,
) -> TaskParts:
    """Cross-entropy step and top-1/top-5 validation.

    ``val_loader`` shards without padding under DDP (build_loader's ``pad=False``), so the
    summed counts cover every validation image exactly once. Loaders may yield
    :class:`SampleBatch` es (``bad_samples="replace"`` / ``"drop"``); training stops when its
    unreadable files pass ``max_bad_fraction`` of the training images.
    """
    criterion = nn.CrossEntropyLoss()
    bad = BadSampleCounter(len(loader.dataset) if loader is not None else 1, max_bad_fraction)
    val_named: dict[str, None] = {}

    def step(m: nn.Module, batch: Any, ctx: StepContext) -> StepOutput:
        if isinstance(batch, SampleBatch):
            bad.update(batch.skipped)
            batch = batch.data
        images, labels = ctx.to_device(batch)
        loss = criterion(m(images).float(), labels)
        return StepOutput(loss, {}, images.shape[0])

    def validate(m: nn.Module, ctx: StepContext) -> dict[str, float]:
        assert val_loader is not None
        acc = TopkAccuracy((1, 5))
        skipped: list[str] = []
        for i, batch in enumerate(val_loader):
            if limit_val_batches and i >= limit_val_batches:
                break
            if isinstance(batch, SampleBatch):
                skipped += batch.skipped
                batch = batch.data
                if batch is None:  # every image of the batch unreadable
                    continue
            images, labels = ctx.to_device(batch)
            acc.update(m(images).float(), labels)
        counts = {"count": acc.count, "bad": len(skipped)}
        hits = dist_utils.reduce_sum({**acc.hits, **counts})
        n_bad, seen = int(hits.pop("bad")), hits.pop("count")
        metrics = {k: 100.0 * v / max(seen, 1) for k, v in hits.items()}
        if n_bad:  # the same on every rank: all gather, or none
            names = {f for part in dist_utils.gather_objects(skipped) for f in part}  # type: ignore[attr-defined]
            if dist_utils.is_main():
                report_validation(names, val_named, int(seen) + n_bad)
            metrics["bad_images"] = float(n_bad)
        return metrics

    return TaskParts(
        model,
        loader,
        step,
        validate if val_loader is not None else None,
        "top1",
        extra={"classes": classes, "class_names": class_names},
    )
