"""Typed training/inference configuration: one dataclass per YAML section.

The YAML files in ``configs/`` mirror these classes field for field. Every field carries a
one-line docstring (shown by ``hrpose train ... --help``); ``__post_init__`` rejects values that
would only fail later, deep inside training. Nothing here touches files or devices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hrpose.structures import InferenceSettings

_ACCELERATORS = ("auto", "cpu", "cuda", "mps")
_AMP = ("off", "auto", "bf16", "fp16")
_OPTIMIZERS = ("adam", "adamw", "sgd")
_SCHEDULES = ("multistep", "cosine", "constant")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass
class SetupConfig:
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
    pretrained_ckpt_path: str | None = None
    """Weights to start from (classifier -> backbone only; pose -> all); None = random init."""

    def __post_init__(self) -> None:
        _check(bool(self.experiment_name), "setup.experiment_name must not be empty")


@dataclass
class TrainerConfig:
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
    """Show tqdm progress bars on rank 0."""

    def __post_init__(self) -> None:
        _check(self.accelerator in _ACCELERATORS, f"trainer.accelerator must be in {_ACCELERATORS}")
        _check(self.amp in _AMP, f"trainer.amp must be one of {_AMP}, got {self.amp!r}")
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


@dataclass
class DatasetConfig:
    """One split of a dataset on disk."""

    root: str = "data/COCO"
    """Dataset root folder."""
    split: str = "train2017"
    """Split name (COCO: train2017/val2017; ImageNet: the train/ or val/ folder)."""
    ann_file: str | None = None
    """COCO annotation file, relative to root; None = annotations/person_keypoints_<split>.json."""
    images_dir: str | None = None
    """COCO image folder, relative to root; None = images/<split>."""


@dataclass
class DataloaderConfig:
    """Batches and worker processes."""

    batch_size: int = 12
    """Images per process (per GPU); the global batch is this times the world size."""
    val_batch_size: int | None = None
    """Images per process for validation; None = batch_size (pose validation uses 1)."""
    num_workers: int = 4
    """DataLoader worker processes per rank."""
    pin_memory: bool = True
    """Pin host memory when training on CUDA."""
    shuffle: bool = True
    """Shuffle the training set every epoch; False keeps file order (with a batch equal to a tiny
    set's size, every step then sees the whole set: full-batch training for overfit demos)."""
    train_ds: DatasetConfig = field(default_factory=DatasetConfig)
    """Training split."""
    val_ds: DatasetConfig = field(default_factory=lambda: DatasetConfig(split="val2017"))
    """Validation split."""

    def __post_init__(self) -> None:
        _check(self.batch_size >= 1, "dataloader.batch_size must be >= 1")
        _check(self.num_workers >= 0, "dataloader.num_workers must be >= 0")


@dataclass
class DataConfig:
    """Pose training input, targets and augmentation (official defaults)."""

    input_size: int = 512
    """Square network input size in pixels (multiple of 32)."""
    sigma: float = 2.0
    """Gaussian sigma of the target heatmaps, in output pixels."""
    max_num_people: int = 30
    """People kept per image for the associative-embedding loss."""
    max_rotation: float = 30.0
    """Random rotation range in degrees (+-)."""
    min_scale: float = 0.75
    """Smallest random scale factor."""
    max_scale: float = 1.5
    """Largest random scale factor."""
    max_translate: float = 40.0
    """Random translation range in input pixels (+-)."""
    flip: float = 0.5
    """Probability of a horizontal flip (also in the unaugmented test-geometry mode)."""
    scale_type: str = "short"
    """Scale reference side of the image: short or long."""
    repeat: int = 1
    """Passes over the training set per epoch (tiny datasets: fewer epoch-end overheads)."""
    augment: bool = True
    """Random affine + flip; False = the test-time geometry (resized whole image, mirrored at
    random; batches padded to a common size): tiny overfit runs evaluated the same way."""

    def __post_init__(self) -> None:
        _check(self.input_size % 32 == 0, "data.input_size must be a multiple of 32")
        _check(0 < self.min_scale <= self.max_scale, "need 0 < data.min_scale <= data.max_scale")
        _check(0.0 <= self.flip <= 1.0, "data.flip is a probability in [0, 1]")
        _check(self.scale_type in ("short", "long"), "data.scale_type must be short or long")


@dataclass
class ClsDataConfig:
    """Classifier input and augmentation (official ImageNet presets)."""

    input_size: int = 224
    """Crop size for training (RandomResizedCrop) and validation (centre crop)."""
    resize_size: int = 256
    """Validation: resize the short side to this before the centre crop."""
    min_area: float = 0.08
    """Smallest crop area fraction of RandomResizedCrop."""
    flip: float = 0.5
    """Probability of a horizontal flip."""

    def __post_init__(self) -> None:
        _check(self.resize_size >= self.input_size, "need data.resize_size >= data.input_size")
        _check(0.0 < self.min_area <= 1.0, "data.min_area must be in (0, 1]")


@dataclass
class ModelConfig:
    """HigherHRNet shape."""

    width: int = 32
    """HRNet width (32 -> W32, 48 -> W48; tiny tests use 8)."""
    num_joints: int = 17
    """Keypoints per person."""

    def __post_init__(self) -> None:
        _check(self.width >= 1, "model.width must be >= 1")
        _check(self.num_joints >= 1, "model.num_joints must be >= 1")


@dataclass
class ClsModelConfig:
    """HRNet classifier shape."""

    width: int = 32
    """HRNet width (32 -> HRNet-W32-C)."""
    num_classes: int = 1000
    """Number of classes; must match the number of class folders."""

    def __post_init__(self) -> None:
        _check(self.width >= 1, "model.width must be >= 1")
        _check(self.num_classes >= 2, "model.num_classes must be >= 2")


@dataclass
class LossConfig:
    """HigherHRNet loss weights per resolution (low 1/4, high 1/2), as official."""

    heatmap_weights: list[float] = field(default_factory=lambda: [1.0, 1.0])
    """Heatmap MSE weight per resolution."""
    push_weights: list[float] = field(default_factory=lambda: [0.001, 0.001])
    """Associative-embedding push weight per resolution."""
    pull_weights: list[float] = field(default_factory=lambda: [0.001, 0.001])
    """Associative-embedding pull weight per resolution."""
    with_ae: list[bool] = field(default_factory=lambda: [True, False])
    """Whether each resolution has tag maps (official: only the low one)."""

    def __post_init__(self) -> None:
        for name in ("heatmap_weights", "push_weights", "pull_weights", "with_ae"):
            _check(len(getattr(self, name)) == 2, f"loss.{name} needs 2 values (low, high)")


@dataclass
class OptimizerConfig:
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
        _check(self.name in _OPTIMIZERS, f"optimizer.name must be one of {_OPTIMIZERS}")
        _check(self.lr > 0, "optimizer.lr must be > 0")
        _check(self.weight_decay >= 0, "optimizer.weight_decay must be >= 0")
        _check(len(self.betas) == 2, "optimizer.betas needs 2 values")


@dataclass
class SchedulerConfig:
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
        _check(self.name in _SCHEDULES, f"scheduler.name must be one of {_SCHEDULES}")
        _check(
            list(self.milestones) == sorted(self.milestones), "scheduler.milestones must increase"
        )
        _check(self.warmup_epochs >= 0, "scheduler.warmup_epochs must be >= 0")


@dataclass(frozen=True)
class InferenceConfig(InferenceSettings):
    """Decoding for validation and prediction: the fields of
    :class:`hrpose.structures.InferenceSettings` (their one definition: input size and every
    decoder setting, official test defaults), plus the weights ``hrpose predict --config`` uses."""

    ckpt_path: str | None = None
    """Weights `hrpose predict --config` uses when --weights is not given; None = --weights is
    required (training validates the model it trains and ignores this)."""

    def settings(self) -> InferenceSettings:
        """The inference settings these fields hold (without ckpt_path)."""
        return InferenceSettings(**{n: getattr(self, n) for n in InferenceSettings.names()})


@dataclass
class TrackingConfig:
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


@dataclass
class PoseTrainConfig:
    """`hrpose train pose`: HigherHRNet on COCO keypoints."""

    setup: SetupConfig = field(default_factory=SetupConfig)
    """Run identity and starting point."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Loop and device."""
    dataloader: DataloaderConfig = field(default_factory=DataloaderConfig)
    """Batches and splits."""
    data: DataConfig = field(default_factory=DataConfig)
    """Targets and augmentation."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Network shape."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Loss weights."""
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    """Optimizer."""
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    """LR schedule."""
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    """Decoding for validation."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """Tracking."""


@dataclass
class ClassifierTrainConfig:
    """`hrpose train classifier`: HRNet-W32-C on an ImageNet-layout folder."""

    setup: SetupConfig = field(default_factory=lambda: SetupConfig(experiment_name="classifier"))
    """Run identity and starting point."""
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(max_epochs=100))
    """Loop and device."""
    dataloader: DataloaderConfig = field(
        default_factory=lambda: DataloaderConfig(
            batch_size=32,
            train_ds=DatasetConfig(root="data/ImageNet", split="train"),
            val_ds=DatasetConfig(root="data/ImageNet", split="val"),
        )
    )
    """Batches and splits."""
    data: ClsDataConfig = field(default_factory=ClsDataConfig)
    """Crops and augmentation."""
    model: ClsModelConfig = field(default_factory=ClsModelConfig)
    """Network shape."""
    optimizer: OptimizerConfig = field(
        default_factory=lambda: OptimizerConfig(
            name="sgd", lr=0.05, weight_decay=1e-4, momentum=0.9, nesterov=True
        )
    )
    """Optimizer."""
    scheduler: SchedulerConfig = field(
        default_factory=lambda: SchedulerConfig(milestones=[30, 60, 90])
    )
    """LR schedule."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """Tracking."""


TASKS: dict[str, type] = {"pose": PoseTrainConfig, "classifier": ClassifierTrainConfig}
