"""The model record: what a pose model file is and how it is meant to be run.

Every hrpose checkpoint and ONNX export carries one (``ModelRecord.to_dict()``, plain JSON
data). Files that carry none (official HigherHRNet and mmpose 0.x checkpoints) get the record of
their registered architecture from :data:`REGISTERED_INPUT_SIZE`, the one table of such
defaults. Pure: no files, no torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from hrpose import __version__
from hrpose.skeleton import COCO17, KeypointSpec, builtin_spec_for, spec_from_dict, spec_to_dict
from hrpose.structures import InferenceSettings

RECORD_VERSION = 1
# Official test input size per HRNet width (HigherHRNet's w32_512 and w48_640 test configs);
# other widths are tested at 512.
REGISTERED_INPUT_SIZE = {32: 512, 48: 640}
DEFAULT_INPUT_SIZE = 512
# Inference-config keys that earlier hrpose versions wrote under another name.
LEGACY_INFERENCE_KEYS = {"det_threshold": "detection_threshold"}
ORIGINS = ("hrpose", "registered", "untrained")


class RecordError(ValueError):
    """A model record that cannot be read or does not match its weights."""


@dataclass(frozen=True)
class ModelRecord:
    """Architecture, keypoint set, inference settings and provenance of one pose model file."""

    width: int
    """HRNet width (32 -> HigherHRNet-W32)."""
    num_joints: int
    """Keypoints per person (the network's heatmap channels)."""
    keypoint_spec: KeypointSpec = COCO17
    """Names, flip pairs, limbs, OKS sigmas and grouping order of the joints."""
    inference: InferenceSettings = field(default_factory=InferenceSettings)
    """Input size, flip, scales and every decode setting the model was trained or released for."""
    architecture: str = "HigherHRNet"
    """Network family."""
    precision: str = "fp32"
    """Numeric format of the stored weights."""
    origin: str = "hrpose"
    """hrpose (trained or exported by hrpose), registered (settings from the architecture table:
    official and mmpose files) or untrained (random weights)."""
    dataset: str | None = None
    """Training data, e.g. ``coco-mini/mini`` (None when unknown)."""
    config_sha256: str | None = None
    """SHA-256 of the training config (canonical JSON), None when unknown."""
    hrpose_version: str | None = __version__
    """hrpose version that wrote the record."""

    def __post_init__(self) -> None:
        if self.keypoint_spec.num_joints != self.num_joints:
            raise RecordError(
                f"record: {self.num_joints} joints but a keypoint spec of "
                f"{self.keypoint_spec.num_joints}"
            )
        if self.origin not in ORIGINS:
            raise RecordError(f"record: origin must be one of {ORIGINS}, got {self.origin!r}")

    @property
    def name(self) -> str:
        """e.g. ``HigherHRNet-W32``."""
        return f"{self.architecture}-W{self.width}"

    def with_inference(self, settings: InferenceSettings) -> ModelRecord:
        """This record run with other inference settings."""
        return replace(self, inference=settings)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (checkpoint ``extra.model_record``, ONNX metadata ``model_record``)."""
        out: dict[str, Any] = {"record_version": RECORD_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "keypoint_spec":
                value = spec_to_dict(value)
            elif f.name == "inference":
                value = {**asdict(value), "scales": list(value.scales)}
            out[f.name] = value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRecord:
        """Read what :meth:`to_dict` wrote; unknown keys of a newer version are an error."""
        data = dict(data)
        version = data.pop("record_version", RECORD_VERSION)
        if not isinstance(version, int) or version > RECORD_VERSION:
            raise RecordError(
                f"model record version {version} is newer than this hrpose reads "
                f"({RECORD_VERSION}): upgrade hrpose"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RecordError(f"model record: unknown field(s) {unknown}; known: {sorted(known)}")
        try:
            if "keypoint_spec" in data:
                data["keypoint_spec"] = spec_from_dict(data["keypoint_spec"])
            if "inference" in data:
                data["inference"] = inference_from_dict(data["inference"])
            return cls(**data)
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(f"model record is malformed: {e}") from e


def inference_from_dict(
    data: dict[str, Any], base: InferenceSettings | None = None
) -> InferenceSettings:
    """Inference settings from a stored dict (earlier hrpose names accepted), over ``base``."""
    given = {LEGACY_INFERENCE_KEYS.get(k, k): v for k, v in dict(data).items()}
    names = {f.name for f in fields(InferenceSettings)}
    values = {k: v for k, v in given.items() if k in names}
    return replace(base or InferenceSettings(), **values)


def registered_record(
    width: int, num_joints: int, spec: KeypointSpec | None = None, input_size: int | None = None
) -> ModelRecord:
    """The record of a file that carries none (official, mmpose): the official test settings at
    the architecture's registered input size (W32: 512, W48: 640)."""
    spec = spec or builtin_spec_for(num_joints)
    if spec is None:
        raise RecordError(
            f"no built-in keypoint set has {num_joints} joints: pass the keypoint spec "
            "(Python: spec=...) for these weights"
        )
    size = input_size or REGISTERED_INPUT_SIZE.get(width, DEFAULT_INPUT_SIZE)
    return ModelRecord(
        width=width,
        num_joints=num_joints,
        keypoint_spec=spec,
        inference=InferenceSettings(input_size=size),
        origin="registered",
        hrpose_version=None,
    )


def config_sha256(config: dict[str, Any]) -> str:
    """SHA-256 of a config tree as canonical JSON (sorted keys)."""
    text = json.dumps(config, sort_keys=True, default=list, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def dataset_name(root: str, split: str) -> str:
    """A short name of a training split, e.g. ``coco-mini/mini``."""
    return f"{root.rstrip('/').rsplit('/', 1)[-1]}/{split}"


def record_from_training_config(
    config: dict[str, Any], spec: KeypointSpec | None = None
) -> ModelRecord:
    """The record a pose run's config tree (the nested dict a checkpoint stores) describes:
    used for training and for hrpose checkpoints written before records existed."""
    model = config.get("model") or {}
    width, num_joints = int(model.get("width", 32)), int(model.get("num_joints", 17))
    spec = spec or builtin_spec_for(num_joints)
    if spec is None:
        raise RecordError(f"the config has {num_joints} joints and no keypoint spec is stored")
    train = ((config.get("dataloader") or {}).get("train_ds")) or {}
    return ModelRecord(
        width=width,
        num_joints=num_joints,
        keypoint_spec=spec,
        inference=inference_from_dict(config.get("inference") or {}),
        dataset=dataset_name(str(train["root"]), str(train["split"])) if train else None,
        config_sha256=config_sha256(config),
    )


def record_of_checkpoint(obj: dict[str, Any], width: int, num_joints: int) -> ModelRecord:
    """The record of a loaded checkpoint dict: its own (``extra.model_record``), else one built
    from its stored training config (earlier hrpose files), else the registered architecture's."""
    extra = obj.get("extra") or {}
    if extra.get("model_record"):
        record = ModelRecord.from_dict(extra["model_record"])
    elif isinstance(obj.get("config"), dict) and obj.get("task", "pose") == "pose":
        raw = extra.get("keypoint_spec")
        spec = spec_from_dict(raw) if raw else None
        record = record_from_training_config(obj["config"], spec)
    else:
        raw = extra.get("keypoint_spec")
        return registered_record(width, num_joints, spec_from_dict(raw) if raw else None)
    if (record.width, record.num_joints) != (width, num_joints):
        raise RecordError(
            f"the file's model record says {record.name} with {record.num_joints} joints but its "
            f"weights are W{width} with {num_joints} joints: the file was edited or mixed up"
        )
    return record
