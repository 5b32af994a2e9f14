"""`hrpose train pose|classifier [--config FILE] [--section.field=value ...]`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hrpose.config.load import ConfigError, help_text, load_config, to_dict, to_yaml
from hrpose.config.schema import TASKS, ClassifierTrainConfig, PoseTrainConfig

if TYPE_CHECKING:
    from hrpose.engine.settings import FitSettings

USAGE = """usage: hrpose train {pose,classifier} [--config FILE.yaml] [--section.field=value ...]
                     [--weights W] [--output DIR] [--device D] [--input-size N] [--no-flip]
                     [--print-config] [--help]

Short flags: --weights = setup.pretrained_ckpt_path (a path, URL or registered name), --output =
setup.results_dir, --device = trainer.accelerator, --input-size = data.input_size (pose: and
inference.input_size), --no-flip = inference.flip=false (pose).

Train HigherHRNet on COCO keypoints (pose) or HRNet-W32-C on ImageNet (classifier). Every config
field can be overridden, e.g. --optimizer.lr=1e-3 --trainer.max_epochs=10 --setup.ckpt_path=None.
Resume a run with --setup.resume=auto --setup.run_name=<run> (its newest valid checkpoint) or
--setup.ckpt_path=results/<experiment>/<run>/checkpoints/last.pt.
Multi-GPU: torchrun --nproc_per_node=N -m hrpose train pose --trainer.use_DDP=True ...
(add --max-restarts=3: a restarted job resumes its newest checkpoint by itself).
"""


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    task, rest = argv[0], argv[1:]
    if task not in TASKS:
        print(f"hrpose train: unknown task {task!r}; use pose or classifier\n\n{USAGE}",
              file=sys.stderr)  # fmt: skip
        return 2
    cls = TASKS[task]
    if "-h" in rest or "--help" in rest:
        print(USAGE + "\nconfig fields (default, meaning):\n" + help_text(cls))
        return 0
    config_path, overrides, show = None, [], False
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg == "--config" and i + 1 < len(rest):
            config_path, i = rest[i + 1], i + 2
            continue
        if arg.startswith("--config="):
            config_path = arg.split("=", 1)[1]
        elif arg == "--print-config":
            show = True
        else:
            overrides.append(arg)
        i += 1
    from hrpose.cli.options import TRAIN_SHORT_FLAGS, short_flags_to_overrides

    try:
        overrides = short_flags_to_overrides(overrides, TRAIN_SHORT_FLAGS[task])
        cfg = load_config(cls, config_path, overrides)
    except ConfigError as e:
        print(f"hrpose train {task}: {e}", file=sys.stderr)
        return 2
    if show:
        print(to_yaml(cfg))
        return 0
    from hrpose.engine.distributed import PeerFailed
    from hrpose.engine.loop import TrainingStopped
    from hrpose.models.weights import WeightsError

    try:
        result = train_task(task, cfg)
    except TrainingStopped as e:  # a clear stop (non-finite loss, full disk): its message
        print(f"hrpose train {task}: {e}", file=sys.stderr)
        return 1
    except (FileExistsError, FileNotFoundError, ValueError, WeightsError, PeerFailed) as e:
        if getattr(e, "during_training", False):
            raise  # a failure inside training keeps its traceback; setup errors are one line
        print(f"hrpose train {task}: {e}", file=sys.stderr)
        return 1
    best = "n/a" if result.best is None else f"{result.best:.4f}"
    print(f"run folder: {result.run_dir}  (epochs done {result.epochs_done}, best "
          f"{'AP' if task == 'pose' else 'top1'} {best}, {result.status.lower()})")  # fmt: skip
    return 0 if result.status == "FINISHED" else 130


def fit_settings(cfg: PoseTrainConfig | ClassifierTrainConfig) -> FitSettings:
    """What the loop takes: the config's run sections as they are (they are the engine's own
    settings classes) and the whole config as a plain dict (stored in the run folder)."""
    from hrpose.engine.settings import FitSettings

    return FitSettings(cfg.setup, cfg.trainer, cfg.optimizer, cfg.scheduler, cfg.tracking,
                       config=to_dict(cfg))  # fmt: skip


def pose_task(cfg: PoseTrainConfig, device: Any, info: Any) -> Any:
    """Config tree -> dataset, transform, loader, model, loss and validation of the pose task."""
    from torch.utils.data import ConcatDataset

    from hrpose.data.augment import AugmentParams
    from hrpose.data.coco import CocoKeypoints, coco_paths
    from hrpose.data.loaders import build_loader
    from hrpose.data.pipeline import PoseTrainTransform, pad_collate
    from hrpose.engine.pose_task import PoseValidation, build_pose_task
    from hrpose.losses import HigherHRNetLoss
    from hrpose.models import HigherHRNet
    from hrpose.record import record_from_training_config

    d, dl = cfg.data, cfg.dataloader
    ann, images = coco_paths(dl.train_ds.root, dl.train_ds.split, dl.train_ds.ann_file,
                             dl.train_ds.images_dir)  # fmt: skip
    dataset = CocoKeypoints(ann, images)
    spec = dataset.spec
    if spec.num_joints != cfg.model.num_joints:
        raise ValueError(
            f"{ann} has {spec.num_joints} keypoints but model.num_joints={cfg.model.num_joints}"
        )
    aug = None
    if d.augment:
        aug = AugmentParams(d.max_rotation, d.min_scale, d.max_scale, d.scale_type,
                            d.max_translate, d.flip)  # fmt: skip
    dataset.transform = PoseTrainTransform(
        spec.flip_index, d.input_size, (d.input_size // 4, d.input_size // 2), d.sigma,
        d.max_num_people, aug, mirror=d.flip,
    )  # fmt: skip
    train_set = dataset if d.repeat == 1 else ConcatDataset([dataset] * d.repeat)
    loader = build_loader(
        train_set, dl.batch_size, shuffle=dl.shuffle, num_workers=dl.num_workers,
        pin_memory=dl.pin_memory and device.type == "cuda", seed=cfg.setup.seed,
        collate_fn=None if d.augment else pad_collate,  # test geometry: sizes differ per image
        bad_samples="replace",
    )  # fmt: skip
    lc = cfg.loss
    loss_fn = HigherHRNetLoss(spec.num_joints, lc.heatmap_weights, lc.push_weights,
                              lc.pull_weights, lc.with_ae)  # fmt: skip
    val = dl.val_ds
    val_ann, val_images = coco_paths(val.root, val.split, val.ann_file, val.images_dir)
    pictures = 2 if cfg.tracking.log_images else 0
    validation = PoseValidation(Path(val_ann), Path(val_images), cfg.trainer.limit_val_batches,
                                pictures)  # fmt: skip
    model = HigherHRNet(cfg.model.width, cfg.model.num_joints)
    if cfg.model.qat:
        model = qat_model(model, cfg)
    record = record_from_training_config(to_dict(cfg), spec)
    return build_pose_task(model, loader, loss_fn, record, validation, info,
                           d.max_bad_fraction, num_files=len(dataset))  # fmt: skip


def qat_model(model: Any, cfg: PoseTrainConfig) -> Any:
    """``model`` prepared for quantization-aware training, after checking the run can do it."""
    from hrpose.models.qat import prepare_qat

    if not (cfg.setup.pretrained_ckpt_path or cfg.setup.ckpt_path or cfg.setup.resume):
        raise ValueError(
            "model.qat=true fine-tunes a trained model, whose BatchNorm statistics it "
            "freezes: pass --weights W (the fp32 checkpoint to quantize)"
        )
    if cfg.trainer.sync_batchnorm:
        raise ValueError(
            "model.qat=true freezes BatchNorm statistics, so trainer.sync_batchnorm has "
            "nothing to do: set --trainer.sync_batchnorm=false"
        )
    return prepare_qat(model)


def classifier_task(cfg: ClassifierTrainConfig, device: Any, info: Any) -> Any:
    """The config tree -> ImageNet folders, presets, loaders and HRNet-C of the classifier task."""
    from hrpose.data.imagenet import ImageFolder, TrainTransform, ValTransform, class_names
    from hrpose.data.loaders import build_loader
    from hrpose.engine.classifier_task import build_classifier_task
    from hrpose.models import HRNetClassifier

    d, dl = cfg.data, cfg.dataloader
    tr, va = dl.train_ds, dl.val_ds
    train = ImageFolder(Path(tr.root) / tr.split, TrainTransform(d.input_size, d.min_area, d.flip))
    if len(train.classes) != cfg.model.num_classes:
        raise ValueError(
            f"{tr.root}/{tr.split} has {len(train.classes)} class folders but "
            f"model.num_classes={cfg.model.num_classes}: set --model.num_classes="
            f"{len(train.classes)}"
        )
    pin = dl.pin_memory and device.type == "cuda"
    loader = build_loader(train, dl.batch_size, shuffle=dl.shuffle, num_workers=dl.num_workers,
                          pin_memory=pin, seed=cfg.setup.seed, bad_samples="replace")  # fmt: skip
    val_dir = Path(va.root) / va.split
    val_loader = None
    if val_dir.is_dir():
        val = ImageFolder(val_dir, ValTransform(d.input_size, d.resize_size))
        val_loader = build_loader(
            val, dl.val_batch_size or dl.batch_size, shuffle=False,
            num_workers=dl.num_workers, pin_memory=pin, pad=False, bad_samples="drop",
        )  # fmt: skip
    model = HRNetClassifier(cfg.model.width, cfg.model.num_classes)
    names = class_names(tr.root, train.classes)
    return build_classifier_task(model, loader, val_loader, train.classes, names,
                                 cfg.trainer.limit_val_batches, d.max_bad_fraction)  # fmt: skip


def train_task(task: str, cfg: PoseTrainConfig | ClassifierTrainConfig) -> Any:
    """Train ``task`` (pose | classifier) with a config object; the loop's FitResult."""
    from hrpose.engine.loop import fit

    build = pose_task if task == "pose" else classifier_task
    return fit(fit_settings(cfg), lambda device, info: build(cfg, device, info), task)
