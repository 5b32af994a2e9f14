"""ONNX export of HigherHRNet with dynamic height/width and the metadata decoding needs."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from hrpose.normalization import IMAGENET_MEAN, IMAGENET_STD
from hrpose.record import ModelRecord
from hrpose.skeleton import spec_to_dict


class TupleOutputs(nn.Module):
    """The model with a plain tuple output, for ONNX (no NamedTuple) and tracing."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = self.model(x)
        return low, high


def export_onnx(model: nn.Module, path: str | Path, record: ModelRecord, opset: int = 17) -> Path:
    """Write ``model`` as ONNX (inputs ``image`` N x 3 x H x W, H and W multiples of 32, dynamic;
    outputs ``low`` 2K maps at 1/4 and ``high`` K maps at 1/2) with metadata: the model record
    (``model_record``), mean/std, and the input size and keypoint spec also on their own.

    The caller's model is left where it is, in its own mode: a CPU copy is exported."""
    import copy

    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cpu_copy = copy.deepcopy(model).cpu().float().eval()
    wrapped = TupleOutputs(cpu_copy).eval()
    size = record.inference.input_size
    dummy = torch.zeros(1, 3, size, size)
    torch.onnx.export(
        wrapped,
        (dummy,),
        str(path),
        input_names=["image"],
        output_names=["low", "high"],
        dynamic_axes={
            "image": {0: "n", 2: "h", 3: "w"},
            "low": {0: "n", 2: "h4", 3: "w4"},
            "high": {0: "n", 2: "h2", 3: "w2"},
        },
        opset_version=opset,
        dynamo=False,
    )
    proto = onnx.load(str(path))
    spec = record.keypoint_spec
    meta = {
        "model_record": json.dumps(record.to_dict()),
        "input_size": str(size),
        "mean": json.dumps(list(IMAGENET_MEAN)),
        "std": json.dumps(list(IMAGENET_STD)),
        "keypoint_names": json.dumps(list(spec.names)),
        "flip_index": json.dumps(list(spec.flip_index)),
        "keypoint_spec": json.dumps(spec_to_dict(spec)),
        "producer": "hrpose",
    }
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path
