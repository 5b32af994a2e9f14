"""Run by tests/test_engine_ddp.py (alone or under torchrun): the pose task's validation of the
trained W8 on the first 3 coco-mini images; rank 0 prints its stats as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from hrpose.engine import distributed as dist_utils
from hrpose.engine.loop import StepContext, evaluate
from hrpose.engine.pose_task import PoseValidation, build_pose_task
from hrpose.models import HigherHRNet, load_weights
from hrpose.record import registered_record
from hrpose.structures import InferenceSettings


def main(coco_mini: Path, weights: Path, use_ddp: bool) -> None:
    device = torch.device("cpu")
    info = dist_utils.init_distributed(use_ddp, device, timeout_s=60)
    model = HigherHRNet(8, 17)
    load_weights(model, weights)
    validation = PoseValidation(coco_mini / "person_keypoints.json", coco_mini / "images",
                                limit=3, pictures=0)  # fmt: skip
    settings = InferenceSettings(input_size=192, flip=False, detection_threshold=0.3)
    record = registered_record(8, 17).with_inference(settings)
    parts = build_pose_task(model, None, None, record, validation, info)  # type: ignore[arg-type]
    assert parts.validate is not None
    stats = evaluate(parts.validate, model, StepContext(device))
    if info.is_main:
        print("STATS " + json.dumps(stats, sort_keys=True))
    dist_utils.cleanup()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "ddp")
