"""What a task gives the training loop and what a run returns: the loop's contract types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn


class TrainingStopped(RuntimeError):
    """The run cannot go on (non-finite loss); the message says what to change."""


class DiskFull(TrainingStopped):
    """A checkpoint did not fit on its disk (ENOSPC): the previous one is intact; not retried."""


@dataclass
class StepContext:
    """What a step function needs besides the model and the batch."""

    device: torch.device
    channels_last: bool = False

    def to_device(self, x: Any) -> Any:
        """Move tensors (nested in lists/dicts) to the device; images get channels_last."""
        if isinstance(x, Tensor):
            x = x.to(self.device, non_blocking=True)
            if self.channels_last and x.dim() == 4 and x.is_floating_point():
                x = x.contiguous(memory_format=torch.channels_last)
            return x
        if isinstance(x, list | tuple):
            return type(x)(self.to_device(v) for v in x)
        if isinstance(x, dict):
            return {k: self.to_device(v) for k, v in x.items()}
        return x


@dataclass
class StepOutput:
    """One training step: the loss to back-propagate and scalar parts for logging."""

    loss: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)
    batch_size: int = 1


@dataclass
class TaskParts:
    """A task as the loop sees it."""

    model: nn.Module
    train_loader: Any
    train_step: Callable[[nn.Module, Any, StepContext], StepOutput]
    validate: Callable[[nn.Module, StepContext], dict[str, float]] | None
    best_metric: str  # higher is better, e.g. "AP" or "top1"
    sample_image: Callable[[Any], Any] | None = None  # batch -> HxWx3 uint8 for logging
    # (model, ctx) -> {name: HxWx3 uint8 RGB}: pictures written at every validation
    val_images: Callable[[nn.Module, StepContext], dict[str, np.ndarray]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # stored in checkpoints


@dataclass
class FitResult:
    """Where a run wrote its files and how it ended."""

    run_dir: Path
    epochs_done: int
    best: float | None
    last_metrics: dict[str, float]
    status: str  # FINISHED | KILLED
