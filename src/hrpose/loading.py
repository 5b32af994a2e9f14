"""``load_model``: any pose model file -> the network and its model record, the one loader
that prediction, evaluation, export, the demo and serving share."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from hrpose.hub import REGISTRY, is_remote, resolve_weights
from hrpose.models import HigherHRNet, describe_arch, extract_state_dict, load_weights
from hrpose.models.weights import WeightsError, read_checkpoint
from hrpose.record import ModelRecord, RecordError, record_of_checkpoint, registered_record
from hrpose.runtime import OnnxNetwork, check_device, warn_int8_speed
from hrpose.skeleton import KeypointSpec, spec_from_dict
from hrpose.structures import InferenceSettings

BACKENDS = ("torch", "onnxruntime")
WEIGHTS_HELP = (
    "Pass a registered name (`hrpose weights list`; e.g. higherhrnet-w32-512, downloaded and "
    "cached on first use) or an http(s) URL. "
    "Official HigherHRNet weights: download pose_higher_hrnet_w32_512.pth from the model zoo "
    "linked in the README of github.com/HRNet/HigherHRNet-Human-Pose-Estimation (Google Drive / "
    "OneDrive), or train your own with `hrpose train pose` (its results/<experiment>/<run>/"
    "checkpoints/best.pt). Use --weights random to run an untrained network on purpose."
)


@dataclass
class LoadedModel:
    """A network ready to run (torch module or ONNX Runtime session) and its record."""

    network: nn.Module | OnnxNetwork
    record: ModelRecord
    description: str
    path: Path | None = None  # the local file read (None for random weights)

    @property
    def backend(self) -> str:
        return "onnxruntime" if isinstance(self.network, OnnxNetwork) else "torch"


def load_model(
    source: str | Path,
    *,
    device: str | torch.device = "cpu",
    backend: str | None = None,
    spec: KeypointSpec | None = None,
    width: int | None = None,
    num_joints: int | None = None,
) -> LoadedModel:
    """Load a path, http(s) URL, registered name, ``.onnx`` file or ``"random"``.

    ``backend`` (torch | onnxruntime) must fit the file when given; ``spec`` replaces the
    record's keypoint set (same joint count); ``width``/``num_joints`` shape ``"random"``, and an
    ``.onnx`` file refuses any that differ from its record.
    """
    device = check_device(device)
    s = str(source)
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    is_onnx = s.endswith(".onnx")
    if backend == "torch" and is_onnx:
        raise ValueError(f"{s} is an ONNX file: use --backend onnxruntime (or leave it out)")
    if backend == "onnxruntime" and not is_onnx:
        raise ValueError(
            f"--backend onnxruntime runs .onnx files; export {s} first: "
            f"hrpose export onnx --weights {s} --output model.onnx"
        )
    if s == "random":
        loaded = _random(width or 32, num_joints or 17, spec)
    elif is_onnx:
        loaded = _onnx(Path(s), device)
        _check_shape(loaded, width, num_joints)
    else:
        if width is not None or num_joints is not None:
            raise ValueError("width/num_joints shape random weights only; files carry theirs")
        loaded = _checkpoint(s)
    if spec is not None and spec != loaded.record.keypoint_spec:
        if spec.num_joints != loaded.record.num_joints:
            raise WeightsError(
                f"{s} predicts {loaded.record.num_joints} joints but the keypoint spec has "
                f"{spec.num_joints}"
            )
        loaded.record = replace(loaded.record, keypoint_spec=spec)
    if isinstance(loaded.network, nn.Module):
        loaded.network = loaded.network.to(device).eval()
    return loaded


def _check_shape(loaded: LoadedModel, width: int | None, num_joints: int | None) -> None:
    """Refuse a width or joint count that the file's record does not have (an ONNX file's
    graph is fixed: it cannot be reshaped to them)."""
    rec = loaded.record
    asked = {"width": width, "num_joints": num_joints}
    wrong = {k: v for k, v in asked.items() if v is not None and v != getattr(rec, k)}
    if wrong:
        given = ", ".join(f"{k}={v}" for k, v in wrong.items())
        raise WeightsError(
            f"{loaded.path} is {rec.name} with {rec.num_joints} joints, not {given}: a model "
            "file carries its architecture; leave width/num_joints out or use matching weights"
        )


def _random(width: int, num_joints: int, spec: KeypointSpec | None) -> LoadedModel:
    """An untrained HigherHRNet, the same weights every time, the caller's RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = HigherHRNet(width, num_joints)
    try:
        record = registered_record(width, num_joints, spec)
    except RecordError as e:
        raise ValueError(f"random weights: {e}") from None
    record = replace(record, origin="untrained")
    desc = f"random HigherHRNet-W{width} (untrained: predictions are meaningless)"
    return LoadedModel(model, record, desc)


def _checkpoint(source: str) -> LoadedModel:
    entry = REGISTRY.get(source) if is_remote(source) else None
    if entry is not None and entry.kind != "pose":
        raise WeightsError(
            f"{source} is {entry.model} {entry.kind} weights, not pose weights; pose models: "
            + ", ".join(n for n, e in REGISTRY.items() if e.kind == "pose")
        )
    path = resolve_weights(source)
    obj = read_checkpoint(path)
    state = extract_state_dict(obj)
    arch = describe_arch(state)
    if arch.get("kind") != "HigherHRNet":
        raise WeightsError(
            f"{path} holds a {arch.get('kind', 'unknown model')} checkpoint, not HigherHRNet "
            "pose weights. " + WEIGHTS_HELP
        )
    width, num_joints = int(arch["width"]), int(arch["num_joints"])
    model = HigherHRNet(width, num_joints, init_weights=False)
    load_weights(model, state)
    try:
        record = record_of_checkpoint(obj, width, num_joints)
    except RecordError as e:
        raise WeightsError(f"{path}: {e}") from None
    if entry is not None:  # a registered file is tested at its registry entry's input size
        size = InferenceSettings(**{**_fields(record.inference), "input_size": entry.input_size})
        record = record.with_inference(size)
        return LoadedModel(model, record, f"{entry.model} {entry.name} ({entry.metric})", path)
    return LoadedModel(model, record, f"HigherHRNet-W{width} from {path}", path)


def _fields(settings: InferenceSettings) -> dict:
    return {n: getattr(settings, n) for n in InferenceSettings.names()}


def _onnx(path: Path, device: torch.device) -> LoadedModel:
    """An exported file: its metadata's record (files of earlier hrpose versions: their input
    size and keypoint spec over the registered defaults)."""
    if not path.is_file():
        raise WeightsError(f"ONNX file not found: {path}. Write one with `hrpose export onnx`.")
    network = OnnxNetwork.open(path, device)
    meta = network.metadata
    try:
        if "model_record" in meta:
            record = ModelRecord.from_dict(json.loads(meta["model_record"]))
        else:
            spec = (
                spec_from_dict(json.loads(meta["keypoint_spec"]))
                if "keypoint_spec" in meta
                else None
            )
            k = spec.num_joints if spec else 17
            size = int(meta.get("input_size", 512))
            record = replace(registered_record(32, k, spec, size), origin="hrpose")
    except (RecordError, ValueError, KeyError) as e:
        raise WeightsError(f"{path}: unreadable hrpose metadata ({e}); export it again") from None
    if record.precision == "int8" or meta.get("precision") == "int8":
        return _int8(network, replace(record, precision="int8"), path, device)
    return LoadedModel(network, record, f"ONNX {path} ({record.name})", path)


def _int8(
    network: OnnxNetwork, record: ModelRecord, path: Path, device: torch.device
) -> LoadedModel:
    """A quantized file (``hrpose quantize``): its graph checked against its record, and the
    warning where this CPU runs INT8 without VNNI."""
    import onnx

    from hrpose.quantize import QuantizeError, check_architecture

    try:
        check_architecture(onnx.load(str(path), load_external_data=False), record, path)
    except QuantizeError as e:
        raise WeightsError(str(e)) from None
    if device.type == "cpu":
        warn_int8_speed()
    return LoadedModel(network, record, f"ONNX {path} ({record.name}, INT8)", path)
