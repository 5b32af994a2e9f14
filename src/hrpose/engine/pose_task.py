"""HigherHRNet on COCO keypoints as a task of the shared training loop."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset

from hrpose.config.schema import PoseTrainConfig
from hrpose.data.augment import AugmentParams
from hrpose.data.coco import CocoKeypoints, coco_paths
from hrpose.data.loaders import build_loader
from hrpose.data.pipeline import PoseTrainTransform, pad_collate
from hrpose.decode import DecodeParams
from hrpose.engine import distributed as dist_utils
from hrpose.engine.loop import StepContext, StepOutput, TaskParts
from hrpose.evaluation.coco_eval import evaluate_keypoints
from hrpose.evaluation.pose import image_list, predict_images
from hrpose.losses import HigherHRNetLoss
from hrpose.models import HigherHRNet
from hrpose.normalization import normalize_batch
from hrpose.predict import Predictor, spec_to_dict


def decode_params(cfg: Any) -> DecodeParams:
    """DecodeParams from an ``inference`` config section (fields of the same names)."""
    return DecodeParams.from_object(cfg)


def build_pose_task(cfg: PoseTrainConfig, device: torch.device, info: Any) -> TaskParts:
    """Dataset, model, loss, step and COCO-AP validation for ``hrpose train pose``."""
    d = cfg.data
    train = cfg.dataloader.train_ds
    ann, images = coco_paths(train.root, train.split, train.ann_file, train.images_dir)
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
        train_set, cfg.dataloader.batch_size, shuffle=cfg.dataloader.shuffle,
        num_workers=cfg.dataloader.num_workers,
        pin_memory=cfg.dataloader.pin_memory and device.type == "cuda", seed=cfg.setup.seed,
        collate_fn=None if d.augment else pad_collate,  # test geometry: sizes differ per image
    )  # fmt: skip
    model = HigherHRNet(cfg.model.width, cfg.model.num_joints)
    lc = cfg.loss
    loss_fn = HigherHRNetLoss(spec.num_joints, lc.heatmap_weights, lc.push_weights,
                              lc.pull_weights, lc.with_ae)  # fmt: skip

    def step(m: torch.nn.Module, batch: Any, ctx: StepContext) -> StepOutput:
        image, heatmaps, masks, joints = ctx.to_device(batch)
        outputs = m(normalize_batch(image, ctx.channels_last))
        total, parts = loss_fn(list(outputs), heatmaps, masks, joints)
        return StepOutput(total, parts, image.shape[0])

    val = cfg.dataloader.val_ds
    val_ann, val_images = coco_paths(val.root, val.split, val.ann_file, val.images_dir)
    params = decode_params(cfg.inference)

    def validate(m: torch.nn.Module, ctx: StepContext) -> dict[str, float]:
        if not val_ann.is_file():
            return {}
        predictor = Predictor(m, spec=spec, input_size=cfg.inference.input_size, params=params,
                              device=ctx.device)  # fmt: skip
        todo = image_list(val_ann)
        if cfg.trainer.limit_val_batches:
            todo = todo[: cfg.trainer.limit_val_batches]
        mine = predict_images(predictor, todo[info.rank :: info.world_size], val_images)
        results = [r for part in dist_utils.gather_objects(mine) for r in part]  # type: ignore[union-attr]
        stats: dict[str, float] = {}
        if info.is_main:
            ids = [i for i, _ in todo]
            stats, _ = evaluate_keypoints(results, val_ann, image_ids=ids)
        return dict(dist_utils.broadcast_object(stats))  # type: ignore[arg-type]

    def sample_image(batch: Any) -> np.ndarray:
        return batch[0][0].cpu().numpy()  # (H, W, 3) uint8 RGB, as the loader yields it

    return TaskParts(model, loader, step, validate, "AP", sample_image,
                     extra={"keypoint_spec": spec_to_dict(spec)})  # fmt: skip
