"""ONNX export of HigherHRNet with dynamic height/width and the metadata decoding needs."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from hrpose.normalization import IMAGENET_MEAN, IMAGENET_STD
from hrpose.skeleton import KeypointSpec


class TupleOutputs(nn.Module):
    """The model with a plain tuple output, for ONNX (no NamedTuple) and tracing."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = self.model(x)
        return low, high


def export_onnx(
    model: nn.Module,
    path: str | Path,
    spec: KeypointSpec,
    input_size: int = 512,
    opset: int = 17,
) -> Path:
    """Write ``model`` as ONNX (inputs ``image`` N x 3 x H x W, H and W multiples of 32, dynamic;
    outputs ``low`` 2K maps at 1/4 and ``high`` K maps at 1/2) with metadata: input size,
    mean/std, keypoint spec."""
    import onnx

    from hrpose.predict import spec_to_dict

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapped = TupleOutputs(model.eval().cpu()).eval()  # export restores this mode on the model
    dummy = torch.zeros(1, 3, input_size, input_size)
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
    meta = {
        "input_size": str(input_size),
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
