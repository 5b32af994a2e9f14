"""The one training loop shared by pose and classifier training: fit, train_one_epoch, evaluate.

A task supplies its model, loader, a step function and a validation function (``TaskParts``);
:func:`fit` alternates :func:`train_one_epoch` and :func:`evaluate` and saves checkpoints. What
surrounds the loop lives in modules named for it: ``wrapping`` (device, AMP, channels_last,
compile, DDP), ``optim`` (the optimizer step and the LR as a function of the position),
``checkpoint`` (what a checkpoint holds, restoring it, pretrained weights), ``checkpoints_dir``
(step checkpoints, sidecars, best.pt), ``run_dir`` (the run folder and its pictures),
``signals`` (SIGINT/SIGTERM), ``tracking`` (MLflow and metric files) and
:mod:`hrpose.progress` (bars). Only rank 0 writes. It takes plain values
(``engine.settings.FitSettings``: the config's run sections) and never reads the config tree.

Resume: a checkpoint after an epoch starts the next one; one saved inside an epoch (every
``trainer.checkpoint_every_steps``, on SIGINT/SIGTERM, or before an exception propagates) holds
the batch position and the epoch's running sums, and the resumed run continues at the next batch
(build_loader's sampler starts there; the data do not depend on workers or RNG state), so either
way the per-step losses equal those of an unbroken run. ``checkpoints_dir`` commits, rotates
and validates the files; ``run`` decides when to save and what to resume.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from hrpose.data.loaders import EpochSampler
from hrpose.engine import distributed as dist_utils
from hrpose.engine.checkpoint import Progress
from hrpose.engine.optim import Optimization, set_lr
from hrpose.engine.settings import FitSettings
from hrpose.engine.signals import StopFlag
from hrpose.engine.task import (  # noqa: F401  (the loop's contract, importable from here)
    FitResult,
    StepContext,
    StepOutput,
    TaskParts,
    TrainingStopped,
)
from hrpose.engine.wrapping import rank_device, resolve_device


def fit(
    settings: FitSettings,
    build: Callable[[torch.device, dist_utils.DistInfo], TaskParts],
    task_name: str,
) -> FitResult:
    """Train the task ``build`` makes, as ``settings`` say (cli/train.py makes them)."""
    t = settings.trainer
    device = resolve_device(t.accelerator)
    info = dist_utils.init_distributed(t.use_DDP, device, t.ddp_timeout_s)
    device = rank_device(device, info)
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # tiny activations of a fresh net slow CPU math otherwise
    try:
        from hrpose.engine.run import Run, seed_everything  # run.py builds on this module

        seed_everything(settings.setup.seed + info.rank)
        parts = dist_utils.all_succeed(lambda: build(device, info))  # one rank fails: all stop
        return Run(settings, parts, task_name, device, info).train()
    finally:
        dist_utils.cleanup()


def epoch_batches(loader: Any, epoch: int, start: int, steps: int) -> Iterator[Any]:
    """Batches ``start``..``steps`` of ``epoch``. build_loader's sampler starts there directly
    (nothing read twice); other loaders read and drop the first ``start`` batches."""
    sampler = getattr(loader, "sampler", None)
    skip = start
    if isinstance(sampler, EpochSampler):
        sampler.set_epoch(epoch, start * loader.batch_size)
        skip = 0
    elif hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    # A resume with a shorter epoch than the checkpoint's (e.g. data.repeat lowered) ends it.
    return itertools.islice(iter(loader), skip, skip + max(0, steps - start))


def train_one_epoch(
    model: nn.Module,
    loader: Any,
    train_step: Callable[[nn.Module, Any, StepContext], StepOutput],
    opt: Optimization,
    ctx: StepContext,
    progress: Progress,
    steps: int,
    stop: StopFlag,
    on_step: Callable[[dict[str, float], float, Any], None] | None = None,
    max_bad_steps: int = 1,
) -> bool:
    """Train from ``progress.batch`` to batch ``steps`` of epoch ``progress.epoch``.

    A step whose loss is not finite on any rank is skipped on all of them (no optimizer or
    scaler update); ``max_bad_steps`` in a row raise :class:`TrainingStopped`. Returns True
    when a signal stopped it (after a completed step; ``progress`` says where).
    """
    model.train()
    epoch = progress.epoch
    for batch in epoch_batches(loader, epoch, progress.batch, steps):
        lr = opt.lr_at(epoch + progress.batch / steps)
        set_lr(opt.optimizer, lr)
        with torch.autocast(ctx.device.type, opt.amp_dtype, enabled=opt.amp_dtype is not None):
            out = train_step(model, batch, ctx)
        loss = out.loss.float()
        bad, stopping = dist_utils.any_rank(
            not bool(torch.isfinite(loss.detach())), stop.signal is not None
        )
        if bad:
            skip_step(model, progress)
            check_bad_steps(model, progress, max_bad_steps, steps, _values(loss, out), lr)
        else:
            progress.updating = True  # the parameters change before progress says so
            opt.step(loss, model)
            values = _values(loss, out)
            progress.add(values, out.batch_size)
            progress.updating = False
            if on_step is not None:
                on_step(values, lr, batch)
        if stopping:
            return True
    return False


def _values(loss: torch.Tensor, out: StepOutput) -> dict[str, float]:
    return {"loss": float(loss.detach()), **{k: float(v) for k, v in out.parts.items()}}


def skip_step(model: nn.Module, progress: Progress) -> None:
    """Drop a step whose loss is not finite: no backward, no update. DDP (built without
    find_unused_parameters) accepts a forward without a backward; every rank skips alike."""
    model.zero_grad(set_to_none=True)
    progress.skip()


def check_bad_steps(
    model: nn.Module, progress: Progress, max_bad_steps: int, steps: int,
    values: dict[str, float], lr: float,
) -> None:  # fmt: skip
    """Stop after ``max_bad_steps`` skipped steps in a row, or at once when the skipped forward
    left non-finite BatchNorm statistics on any rank (all ranks agree, as on the skip): the
    message names the step and the loss parts."""
    p = progress
    buffers = [b for b in model.buffers() if b.is_floating_point()]
    (poisoned,) = dist_utils.any_rank(any(not bool(torch.isfinite(b).all()) for b in buffers))
    if p.bad_in_row < max_bad_steps and not poisoned:
        return
    parts = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
    why = f"{p.bad_in_row} steps in a row (trainer.max_bad_steps={max_bad_steps})"
    if poisoned:
        why = "it left non-finite BatchNorm statistics"
    raise TrainingStopped(
        f"non-finite loss at epoch {p.epoch + 1}, batch {p.batch}/{steps} (step {p.step}): "
        f"{parts}; stopped as {why}. Lower --optimizer.lr (now {lr:g}), enable "
        "--trainer.grad_clip, or use --trainer.amp=off"
    )


def evaluate(
    validate: Callable[[nn.Module, StepContext], Any],
    model: nn.Module,
    ctx: StepContext,
) -> Any:
    """Run the task's validation in eval mode without gradients; the model returns to train."""
    model.eval()
    try:
        with torch.no_grad():
            return validate(model, ctx)
    finally:
        model.train()
