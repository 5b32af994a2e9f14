"""Loading official and hrpose checkpoints into hrpose models, with errors that name the cause."""

from __future__ import annotations

import contextlib
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

PREFIXES = ("module.", "_orig_mod.")
CONTAINER_KEYS = ("model", "state_dict", "model_state_dict", "net")
# mmpose 0.x's AssociativeEmbedding keeps the official modules under two attributes.
MMPOSE_PREFIXES = ("backbone.", "keypoint_head.")
BACKBONE_ROOTS = (
    "conv1",
    "bn1",
    "conv2",
    "bn2",
    "layer1",
    "transition1",
    "transition2",
    "transition3",
    "stage2",
    "stage3",
    "stage4",
)


class WeightsError(RuntimeError):
    """A checkpoint that cannot be loaded into the requested model; the message says why."""


@dataclass
class LoadReport:
    """What ``load_weights`` did: tensors loaded, and source / model keys it left alone."""

    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # in the source, not loaded
    missing: list[str] = field(default_factory=list)  # in the model, not in the source
    backbone_only: bool = False

    def summary(self) -> str:
        mode = " (backbone only)" if self.backbone_only else ""
        return (
            f"loaded {len(self.loaded)} tensors{mode}; skipped {len(self.skipped)} from the "
            f"checkpoint; {len(self.missing)} model tensors keep their initial values"
        )


def read_checkpoint(path: str | Path) -> dict:
    """``torch.load`` safely (``weights_only=True``); a clear error when it is no checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"weights file not found: {path}. Pass the path of an official HigherHRNet/HRNet "
            "checkpoint or an hrpose checkpoint (results/<experiment>/<run>/checkpoints/best.pt)."
        )
    try:
        # mmcv-written metadata may hold numpy scalars/arrays: plain data, allowed; no code.
        with _numpy_allowed():
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as e:
        raise WeightsError(
            f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}). Was the download truncated, or is it "
            "another file type?"
        ) from e
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict or checkpoint")
    return dict(obj)


def _numpy_allowed() -> contextlib.AbstractContextManager:
    """weights_only loading that also accepts numpy values (torch >= 2.5; older: as is)."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    return safe_globals(_numpy_globals()) if safe_globals else contextlib.nullcontext()


def _numpy_globals() -> list:
    """numpy's array/scalar reconstructors under the names numpy 1.x and 2.x pickle them by."""
    import numpy as np

    core = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    dtypes = {type(np.dtype(c)) for c in "?bBhHiIlLqQefdFDUS"}  # numpy >= 1.25: one class each
    out: list = [np.dtype, np.ndarray, *dtypes]
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out += [(core.scalar, f"{mod}.scalar"), (core._reconstruct, f"{mod}._reconstruct")]
    return out


def is_mmpose_layout(state: Mapping[str, object]) -> bool:
    """True for mmpose 0.x keys: everything under ``backbone.`` or ``keypoint_head.``."""
    return any(k.startswith(MMPOSE_PREFIXES[0]) for k in state) and all(
        k.startswith(MMPOSE_PREFIXES) for k in state
    )


def from_mmpose(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """mmpose 0.x HRNet + AEHigherResolutionHead keys -> official keys, order kept.

    mmpose's modules are the official ones under ``backbone.`` (stem, stages) and
    ``keypoint_head.`` (``final_layers``, ``deconv_layers``), so dropping the prefix is the map.
    """
    out = {}
    for key, value in state.items():
        prefix = next((p for p in MMPOSE_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            raise WeightsError(
                f"{key!r} is not an mmpose 0.x HigherHRNet key (expected the prefixes "
                f"{MMPOSE_PREFIXES}); is this another mmpose model?"
            )
        out[key[len(prefix) :]] = value
    return out


def extract_state_dict(obj: Mapping) -> dict[str, Tensor]:
    """The tensor dict inside an official/hrpose/mmpose 0.x checkpoint, in official key names
    (no DDP/compile prefixes, mmpose's ``backbone.``/``keypoint_head.`` dropped)."""
    for key in CONTAINER_KEYS:
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    state = {}
    for name, value in obj.items():
        if not isinstance(value, Tensor):
            continue
        changed = True
        while changed:
            changed = False
            for prefix in PREFIXES:
                if name.startswith(prefix):
                    name = name[len(prefix) :]
                    changed = True
        state[name] = value
    if not state:
        raise WeightsError(
            "the checkpoint holds no tensors; expected a state dict or a dict with a "
            f"'{CONTAINER_KEYS[0]}' or '{CONTAINER_KEYS[1]}' entry"
        )
    return from_mmpose(state) if is_mmpose_layout(state) else state


def _is_backbone(key: str) -> bool:
    return key.split(".", 1)[0] in BACKBONE_ROOTS


def describe_arch(state: Mapping[str, Tensor]) -> dict[str, int | str]:
    """Infer width, joint count / classes and model kind from a state dict (for messages)."""
    info: dict[str, int | str] = {}
    if "transition1.0.0.weight" in state:
        info["width"] = int(state["transition1.0.0.weight"].shape[0])
    if "final_layers.1.weight" in state:
        info["kind"] = "HigherHRNet"
        info["num_joints"] = int(state["final_layers.1.weight"].shape[0])
    elif "classifier.weight" in state:
        info["kind"] = "HRNetClassifier"
        info["num_classes"] = int(state["classifier.weight"].shape[0])
    elif any(_is_backbone(k) for k in state):
        info["kind"] = "HRNet backbone"
    return info


def _mismatch_message(model: nn.Module, source: dict, target: dict, bad: list[str]) -> str:
    src, dst = describe_arch(source), describe_arch(target)
    causes = []
    for key, what in (
        ("width", "width"),
        ("num_joints", "joint count"),
        ("num_classes", "classes"),
    ):
        if key in src and key in dst and src[key] != dst[key]:
            causes.append(f"the checkpoint has {what} {src[key]}, the model {dst[key]}")
    shapes = ", ".join(
        f"{k} {tuple(source[k].shape)} vs model {tuple(target[k].shape)}" for k in bad[:5]
    )
    more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
    cause = "; ".join(causes) or "a different architecture"
    return (
        f"cannot load weights into {type(model).__name__}: {len(bad)} tensors differ in shape "
        f"({shapes}{more}). Probable cause: {cause}. Build the model to match, e.g. "
        f"--model.width / --model.num_joints."
    )


def load_weights(model: nn.Module, source: str | Path | Mapping, strict: bool = True) -> LoadReport:
    """Load ``source`` (path, checkpoint dict or state dict) into ``model``.

    Official checkpoints, hrpose checkpoints, mmpose 0.x checkpoints (detected by their key
    prefixes), ``module.``/``_orig_mod.`` prefixes and missing ``num_batches_tracked`` buffers
    are accepted. When the source is a classifier and the model a HigherHRNet (or the
    reverse), only the shared backbone is loaded and the report says so.
    ``strict`` then applies to the backbone. Shape mismatches always raise ``WeightsError``.
    """
    obj = read_checkpoint(source) if isinstance(source, str | Path) else dict(source)
    state = extract_state_dict(obj)
    target = model.state_dict()

    # Fill BatchNorm counters absent from old checkpoints.
    for key, value in target.items():
        if key.endswith("num_batches_tracked") and key not in state:
            prefix = key[: -len("num_batches_tracked")]
            if prefix + "running_mean" in state:
                state[key] = value.clone()

    # Backbone transfer when the source has none of the model's head tensors (e.g. an ImageNet
    # classifier loaded into HigherHRNet, or a bare backbone).
    head_keys = [k for k in target if not _is_backbone(k)]
    backbone_only = bool(head_keys) and not any(k in state for k in head_keys)
    if backbone_only:
        candidates = {k: v for k, v in state.items() if _is_backbone(k) and k in target}
        # The pose model drops the low-resolution outputs of the last stage-4 module.
        scope = [k for k in target if _is_backbone(k)]
    else:
        candidates = {k: v for k, v in state.items() if k in target}
        scope = list(target)

    bad = [k for k, v in candidates.items() if v.shape != target[k].shape]
    if bad:
        raise WeightsError(_mismatch_message(model, state, target, bad))
    missing = [k for k in scope if k not in candidates]
    unexpected = [k for k in state if k not in target]
    if strict and not backbone_only and (missing or unexpected):
        info = describe_arch(state)
        raise WeightsError(
            f"checkpoint does not match {type(model).__name__}: {len(missing)} missing keys "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:3]}). "
            f"The checkpoint looks like {info or 'no known hrpose/official model'}; pass "
            "strict=False to load what matches."
        )
    if strict and backbone_only and missing:
        raise WeightsError(
            f"backbone transfer into {type(model).__name__}: {len(missing)} backbone tensors "
            f"missing from the checkpoint (e.g. {missing[:3]})"
        )
    model.load_state_dict(candidates, strict=False)
    return LoadReport(
        loaded=sorted(candidates),
        skipped=sorted(k for k in state if k not in candidates),
        missing=sorted(k for k in target if k not in candidates),
        backbone_only=backbone_only,
    )
