"""What the training loop takes, as plain values: cli/train.py builds them from the config tree.

The loop never sees the config classes; it gets these dataclasses plus the run's config as a
plain nested dict, which it only stores (config.yaml, MLflow params, checkpoints).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hrpose.engine.optim import lr_factor


@dataclass(frozen=True)
class LoopSettings:
    """Device, DDP, speed options and the epoch loop's lengths and cadences."""

    accelerator: str = "auto"  # auto | cpu | cuda | mps
    max_epochs: int = 1
    limit_batches: int | None = None  # train on at most this many batches per epoch
    use_ddp: bool = False
    ddp_timeout_s: int = 600
    sync_batchnorm: bool = False
    use_compile: bool = False
    amp: str = "off"  # off | auto | bf16 | fp16
    channels_last: bool = False
    grad_clip: float | None = None
    val_every: int = 1  # validate every N epochs and after the last; 0 = never
    log_every: int = 10  # step metrics to the tracker every N steps
    progress: bool = True  # tqdm bars on rank 0


@dataclass(frozen=True)
class RunSettings:
    """Run identity, seed, where the run folder goes and where training starts from."""

    seed: int = 42
    results_dir: str = "results"
    experiment_name: str = "run"
    run_name: str | None = None  # None = a timestamp
    ckpt_path: str | None = None  # a last.pt/best.pt to resume
    pretrained_ckpt_path: str | None = None  # weights to start a new run from


@dataclass(frozen=True)
class OptimizerSettings:
    """Optimizer family, its hyper-parameters and the parameter groups' weight decay (the LR
    comes from :class:`LRSchedule`, set before every step)."""

    name: str = "adam"  # adam | adamw | sgd
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    no_decay_norm_bias: bool = False


@dataclass(frozen=True)
class LRSchedule:
    """The LR as a pure function of the fractional epoch (see :func:`optim.lr_factor`)."""

    base_lr: float
    max_epochs: int
    name: str = "constant"  # multistep | cosine | constant
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    warmup_factor: float = 0.001
    min_factor: float = 0.0

    def __call__(self, position: float) -> float:
        """LR at ``position`` = epochs done + batch / batches per epoch."""
        return self.base_lr * lr_factor(
            position, schedule=self.name, max_epochs=self.max_epochs,
            milestones=self.milestones, gamma=self.gamma, warmup_epochs=self.warmup_epochs,
            warmup_factor=self.warmup_factor, min_factor=self.min_factor,
        )  # fmt: skip


@dataclass(frozen=True)
class TrackingSettings:
    """MLflow (store URI, system metrics) and the run folder's pictures."""

    mlflow: bool = True
    uri: str | None = None  # None = $MLFLOW_TRACKING_URI, else <results_dir>/mlflow.db
    system_metrics: bool = True
    log_images: bool = True


@dataclass(frozen=True)
class FitSettings:
    """Everything :func:`hrpose.engine.loop.fit` needs besides the task."""

    loop: LoopSettings
    run: RunSettings
    optimizer: OptimizerSettings
    schedule: LRSchedule
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    config: dict[str, Any] = field(default_factory=dict)  # stored only: config.yaml, params, ckpt
