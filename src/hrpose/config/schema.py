"""Typed training/inference configuration: one dataclass per YAML section.

The YAML files in ``configs/`` mirror these classes field for field. Every field carries a
one-line docstring (shown by ``hrpose train ... --help``); ``__post_init__`` rejects values that
would only fail later, deep inside training. Nothing here touches files or devices.

The run sections (setup, trainer, optimizer, scheduler, tracking) are the engine's own settings
classes from :mod:`hrpose.engine.settings`, used as they are: each training setting is defined
once, there, and the loop reads these sections without a mapping. The ``*Config`` names below
are those classes under their config names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hrpose.engine.settings import (
    OptimizerSettings,
    SchedulerSettings,
    SetupSettings,
    TrackingSettings,
    TrainerSettings,
)
from hrpose.structures import InferenceSettings

SetupConfig = SetupSettings
TrainerConfig = TrainerSettings
OptimizerConfig = OptimizerSettings
SchedulerConfig = SchedulerSettings
TrackingConfig = TrackingSettings


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


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
    max_bad_fraction: float = 0.001
    """Unreadable (missing, corrupt, truncated) training images tolerated, as a fraction of the
    training set's files: each is skipped, replaced and named in the log; past it training stops
    listing them. 0 = stop at the first."""

    def __post_init__(self) -> None:
        _check(0.0 <= self.max_bad_fraction <= 1.0, "data.max_bad_fraction must be in [0, 1]")
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
    max_bad_fraction: float = 0.001
    """Unreadable (missing, corrupt, truncated) training images tolerated, as a fraction of the
    training set's files: each is skipped, replaced and named in the log; past it training stops
    listing them. 0 = stop at the first."""

    def __post_init__(self) -> None:
        _check(0.0 <= self.max_bad_fraction <= 1.0, "data.max_bad_fraction must be in [0, 1]")
        _check(self.resize_size >= self.input_size, "need data.resize_size >= data.input_size")
        _check(0.0 < self.min_area <= 1.0, "data.min_area must be in (0, 1]")


@dataclass
class ModelConfig:
    """HigherHRNet shape."""

    width: int = 32
    """HRNet width (32 -> W32, 48 -> W48; tiny tests use 8)."""
    num_joints: int = 17
    """Keypoints per person."""
    qat: bool = False
    """Quantization-aware fine-tuning: train as the INT8 file computes (hrpose.models.qat:
    BatchNorm frozen and folded, int8 weights, uint8 activations), from --weights; then
    `hrpose quantize` the checkpoint (docs/inference.md, "INT8")."""

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
class PoseTrainConfig:
    """`hrpose train pose`: HigherHRNet on COCO keypoints."""

    setup: SetupSettings = field(default_factory=SetupSettings)
    """Run identity and starting point."""
    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    """Loop and device."""
    dataloader: DataloaderConfig = field(default_factory=DataloaderConfig)
    """Batches and splits."""
    data: DataConfig = field(default_factory=DataConfig)
    """Targets and augmentation."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Network shape."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Loss weights."""
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    """Optimizer."""
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    """LR schedule."""
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    """Decoding for validation."""
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    """Tracking."""


@dataclass
class ClassifierTrainConfig:
    """`hrpose train classifier`: HRNet-W32-C on an ImageNet-layout folder."""

    setup: SetupSettings = field(
        default_factory=lambda: SetupSettings(experiment_name="classifier")
    )
    """Run identity and starting point."""
    trainer: TrainerSettings = field(default_factory=lambda: TrainerSettings(max_epochs=100))
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
    optimizer: OptimizerSettings = field(
        default_factory=lambda: OptimizerSettings(
            name="sgd", lr=0.05, weight_decay=1e-4, momentum=0.9, nesterov=True
        )
    )
    """Optimizer."""
    scheduler: SchedulerSettings = field(
        default_factory=lambda: SchedulerSettings(milestones=[30, 60, 90])
    )
    """LR schedule."""
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    """Tracking."""


TASKS: dict[str, type] = {"pose": PoseTrainConfig, "classifier": ClassifierTrainConfig}
