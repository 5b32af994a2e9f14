"""The training settings, each defined once: the config schema's run sections are these classes.

``config/schema.py`` uses them as the types of its ``setup``, ``trainer``, ``optimizer``,
``scheduler`` and ``tracking`` sections (the YAML files mirror them field for field), and the loop
reads them as plain values: the engine never imports the config package. Every field carries a
one-line docstring (``hrpose train ... --help`` shows it); ``__post_init__`` rejects values that
would only fail later, deep inside training. Task-specific defaults (the classifier's 100 epochs,
SGD and milestones) are factory defaults of the task's config in ``config/schema.py``. This module
imports nothing from hrpose and touches no files or devices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ACCELERATORS = ("auto", "cpu", "cuda", "mps")
AMP_MODES = ("off", "auto", "bf16", "fp16")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("multistep", "cosine", "constant")
RESUME_MODES = (None, "auto")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass
class SetupSettings:
    """Run identity, seeding and where to start from."""

    seed: int = 42
    """Seed: Python, NumPy and torch get seed + rank (weight init); the data order and each
    sample's augmentation derive from the seed alone, the same on every rank and worker count."""
    experiment_name: str = "pose"
    """Experiment name: results/<experiment_name>/ and the MLflow experiment."""
    run_name: str | None = None
    """Run folder name under the experiment; None = a timestamp."""
    results_dir: str = "results"
    """Root folder for run folders (and the default MLflow SQLite store)."""
    ckpt_path: str | None = None
    """A last.pt/best.pt to resume from: weights, optimizer, epoch and batch, RNG and MLflow run
    (a last.pt saved by SIGINT/SIGTERM continues at the next batch); None = a new run."""
    resume: str | None = None
    """auto = continue from the newest valid checkpoint of the run folder (setup.ckpt_path's,
    else results_dir/experiment_name/run_name; a new run when it holds none; a corrupt newest
    one is reported and the previous one used); None = only from setup.ckpt_path, except
    under a torchrun restart (TORCHELASTIC_RESTART_COUNT > 0), which always means auto."""
    pretrained_ckpt_path: str | None = None
    """Weights to start from: a file, an http(s) URL or a registered name (`hrpose weights
    list`), as --weights takes them (classifier -> backbone only; pose -> all); None = random
    init."""

    def __post_init__(self) -> None:
        _check(bool(self.experiment_name), "setup.experiment_name must not be empty")
        _check(self.resume in RESUME_MODES, f"setup.resume must be one of {RESUME_MODES}")


@dataclass
class TrainerSettings:
    """Loop, device and speed options."""

    accelerator: str = "auto"
    """Device: auto (cuda when available, else cpu), cpu, cuda or mps."""
    max_epochs: int = 300
    """Total number of epochs; a resumed run continues up to this number."""
    limit_batches: int | None = None
    """Train on at most this many batches per epoch (smoke runs); None = all."""
    limit_val_batches: int | None = None
    """Validate on at most this many batches/images; None = all."""
    use_DDP: bool = False
    """Use DistributedDataParallel (launch with torchrun; gloo on CPU, nccl on CUDA)."""
    sync_batchnorm: bool = False
    """Convert BatchNorm to SyncBatchNorm under DDP."""
    use_compile: bool = False
    """Wrap the model in torch.compile."""
    amp: str = "off"
    """Mixed precision: off, auto (CUDA: bf16 if supported else fp16; other devices: off),
    bf16, fp16."""
    channels_last: bool = False
    """Keep the model and inputs in channels_last memory format."""
    grad_clip: float | None = None
    """Clip the global gradient norm to this value; None = no clipping."""
    val_every: int = 1
    """Validate every N epochs (and always after the last epoch); 0 = never."""
    log_every: int = 10
    """Log step metrics (loss, LR, img/s) to the tracker every N steps."""
    ddp_timeout_s: int = 600
    """Collective timeout in seconds: a dead or stuck rank ends the job instead of hanging."""
    progress: bool = True
    """Show tqdm progress bars on rank 0 (on a terminal; a log file gets one line per epoch)."""
    checkpoint_every_steps: int = 4000
    """Save a checkpoint every N optimizer steps as well as after each epoch; 0 = epochs only.
    4000 steps are about 10 minutes of one GPU at the official batch: 12 images per GPU per
    step at 80.9 img/s (W32, H200, fp32: benchmarks/README) is 0.148 s a step, and 4000 x
    0.148 s = 9.9 min. A slower GPU takes proportionally longer: lower N to lose less."""
    keep_checkpoints: int = 3
    """Keep the newest N step checkpoints (checkpoints/step-*.pt, each with a .json sidecar of
    its size and SHA-256); best.pt is kept apart. W32 with Adam: about 330 MiB a file."""
    max_bad_steps: int = 5
    """Skip a step whose loss is NaN/inf (no optimizer or scaler update); stop after N such
    steps in a row, keeping the last good checkpoint."""

    def __post_init__(self) -> None:
        _check(self.accelerator in ACCELERATORS, f"trainer.accelerator must be in {ACCELERATORS}")
        _check(self.amp in AMP_MODES, f"trainer.amp must be one of {AMP_MODES}, got {self.amp!r}")
        _check(self.max_epochs >= 1, "trainer.max_epochs must be >= 1")
        _check(
            self.limit_batches is None or self.limit_batches >= 1,
            "trainer.limit_batches must be >= 1 or None",
        )
        _check(
            self.limit_val_batches is None or self.limit_val_batches >= 1,
            "trainer.limit_val_batches must be >= 1 or None",
        )
        _check(self.grad_clip is None or self.grad_clip > 0, "trainer.grad_clip must be > 0")
        _check(self.val_every >= 0, "trainer.val_every must be >= 0")
        _check(self.log_every >= 1, "trainer.log_every must be >= 1")
        _check(self.ddp_timeout_s >= 1, "trainer.ddp_timeout_s must be >= 1")
        _check(self.checkpoint_every_steps >= 0, "trainer.checkpoint_every_steps must be >= 0")
        _check(self.keep_checkpoints >= 1, "trainer.keep_checkpoints must be >= 1")
        _check(self.max_bad_steps >= 1, "trainer.max_bad_steps must be >= 1")


@dataclass
class OptimizerSettings:
    """Optimizer and its parameter groups."""

    name: str = "adam"
    """adam, adamw or sgd."""
    lr: float = 1e-3
    """Base learning rate (for the global batch given in the config)."""
    weight_decay: float = 0.0
    """Weight decay (official Adam runs use none: their wd setting is never passed to Adam)."""
    momentum: float = 0.9
    """SGD momentum."""
    nesterov: bool = False
    """SGD Nesterov momentum."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """Adam/AdamW betas."""
    no_decay_norm_bias: bool = False
    """Exclude norm weights and biases from weight decay (official SGD: no, decay applies to
    every parameter)."""

    def __post_init__(self) -> None:
        _check(self.name in OPTIMIZERS, f"optimizer.name must be one of {OPTIMIZERS}")
        _check(self.lr > 0, "optimizer.lr must be > 0")
        _check(self.weight_decay >= 0, "optimizer.weight_decay must be >= 0")
        _check(len(self.betas) == 2, "optimizer.betas needs 2 values")


@dataclass
class SchedulerSettings:
    """Learning-rate schedule, evaluated per step as a pure function of the epoch position."""

    name: str = "multistep"
    """multistep, cosine or constant."""
    milestones: list[int] = field(default_factory=lambda: [200, 260])
    """multistep: epochs at which the LR is multiplied by gamma."""
    gamma: float = 0.1
    """multistep: LR factor at each milestone."""
    warmup_epochs: float = 0.0
    """Linear warm-up length in epochs (fractions allowed); 0 = none."""
    warmup_factor: float = 0.001
    """LR factor at the first warm-up step."""
    min_lr_factor: float = 0.0
    """cosine: final LR as a fraction of the base LR."""

    def __post_init__(self) -> None:
        _check(self.name in SCHEDULES, f"scheduler.name must be one of {SCHEDULES}")
        _check(
            list(self.milestones) == sorted(self.milestones), "scheduler.milestones must increase"
        )
        _check(self.warmup_epochs >= 0, "scheduler.warmup_epochs must be >= 0")


@dataclass
class TrackingSettings:
    """Experiment tracking (MLflow) and the run folder's own metric files."""

    mlflow: bool = True
    """Log to MLflow (no server needed: a local SQLite store by default)."""
    uri: str | None = None
    """Tracking URI; None = $MLFLOW_TRACKING_URI, else sqlite:///<results_dir>/mlflow.db."""
    system_metrics: bool = True
    """Log CPU/RAM/GPU usage through MLflow's system-metrics logging."""
    log_images: bool = True
    """Write the first training batch's image and, at every pose validation, predicted skeletons,
    heatmaps and tags of two validation images to the run folder (and MLflow artifacts)."""


@dataclass(frozen=True)
class FitSettings:
    """Everything :func:`hrpose.engine.loop.fit` needs besides the task: the run sections of
    the config as they are, and the whole config as a plain dict (stored only: config.yaml,
    MLflow params, checkpoints)."""

    setup: SetupSettings = field(default_factory=SetupSettings)
    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    config: dict[str, Any] = field(default_factory=dict)
