"""Predictor: image -> People with HigherHRNet (torch or ONNX Runtime) and the official decoder.

The Predictor orchestrates: preprocessing per scale, the network calls (batched), decoding.
Loading a file and its record lives in :mod:`hrpose.loading`, device/precision policy and the
ONNX Runtime adapter in :mod:`hrpose.runtime`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hrpose.affine import Transform
from hrpose.decode import DecodeParams, decode, preprocess
from hrpose.hub import DEFAULT_POSE
from hrpose.loading import WEIGHTS_HELP, LoadedModel, load_model
from hrpose.record import ModelRecord, registered_record
from hrpose.runtime import (
    AUTOCAST_DTYPES,
    BATCH_FRAMES,
    PRECISIONS,
    check_device,
    check_int8,
    check_precision,
    cpu_has_native_bf16,
    default_batch_frames,
    fast_options,
    prepare_network,
)
from hrpose.skeleton import KeypointSpec, spec_to_dict
from hrpose.structures import InferenceSettings, People

__all__ = [
    "AUTOCAST_DTYPES", "BATCH_FRAMES", "PRECISIONS", "WEIGHTS_HELP", "Prediction", "Predictor",
    "PreparedImage", "prepare_image",
    "cpu_has_native_bf16", "default_batch_frames", "fast_options", "spec_to_dict",
]  # fmt: skip


@dataclass
class Prediction:
    """People of one image, the network outputs and the input geometry (for visualisation)."""

    people: People
    outputs: list[torch.Tensor] = field(default_factory=list)  # scale 1, batch 1
    transform: Transform | None = None  # scale 1: image -> network input


@dataclass(frozen=True)
class PreparedImage:
    """One image made ready for the network: per scale the normalised (3, h, w) input and its
    image -> input :class:`Transform`. Plain tensors and numbers, so a DataLoader worker can
    make it ahead of the network (:func:`prepare_image`)."""

    inputs: tuple[torch.Tensor, ...]
    transforms: tuple[Transform, ...]
    image_size: tuple[int, int]  # (width, height) of the RGB image
    input_size: int
    scales: tuple[float, ...]


def prepare_image(image: np.ndarray, input_size: int, scales: Sequence[float]) -> PreparedImage:
    """:class:`PreparedImage` of an RGB uint8 (H, W, 3) image: the preprocessing of every
    :class:`Predictor` call, as a function of values only (runs in worker processes)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    min_scale = min(scales)
    pairs = [preprocess(image, input_size, s, min_scale) for s in scales]
    return PreparedImage(
        tuple(t for t, _ in pairs),
        tuple(tr for _, tr in pairs),
        (image.shape[1], image.shape[0]),
        int(input_size),
        tuple(float(s) for s in scales),
    )


def resolve_settings(
    base: InferenceSettings, input_size: int | None = None, params: DecodeParams | None = None
) -> InferenceSettings:
    """``base`` with ``params``' decode fields (an InferenceSettings also sets the input size)
    and then ``input_size`` replacing its own: the Python API's overrides of a record."""
    if params is not None:
        values = {n: getattr(params, n) for n in type(params).names()}
        base = InferenceSettings(**{**_values(base), **values})
    if input_size is not None:
        base = replace(base, input_size=input_size)
    return base


def _values(settings: InferenceSettings) -> dict:
    return {n: getattr(settings, n) for n in InferenceSettings.names()}


class Predictor:
    """Runs the network on an RGB image (with flip and scales as its settings say) and decodes
    people; ``record`` says what the model is and how it is run."""

    def __init__(
        self,
        model: nn.Module | Any,
        *,
        record: ModelRecord | None = None,
        spec: KeypointSpec | None = None,
        input_size: int | None = None,
        params: DecodeParams | None = None,
        device: str | torch.device = "cpu",
        description: str = "",
        channels_last: bool = True,
        fuse_bn: bool = True,
        precision: str = "fp32",
        compile: bool = False,
        batch_flip: bool | None = None,
    ) -> None:
        """``model``: a HigherHRNet (or an ONNX-Runtime network, which ignores the speed options).

        ``record``: the model's record (default: the registered one of the model's shape);
        ``spec``, ``input_size`` and ``params`` override its keypoint set and inference settings.
        Speed options (torch models): ``channels_last`` memory format and ``fuse_bn`` (BatchNorm
        folded into the convolutions of an inference copy; ``self.model`` stays the original),
        both equal to the plain network up to float rounding; ``precision`` "fp32", "bf16"
        (the backbone under autocast, the heads and the decoder's input in fp32; fast only on
        CPUs with AMX/AVX512-BF16 and on GPUs) or "fp16" (autocast, CUDA only);
        an INT8 model (``hrpose quantize``) runs as "int8", its own precision;
        ``compile`` (``torch.compile``); ``batch_flip`` sends the image and its mirror as one
        batch of 2 (default: on CUDA only; on a CPU two single forwards are faster).
        """
        self.device = check_device(device)
        if record is None:
            k = spec.num_joints if spec else int(getattr(model, "num_joints", 17))
            record = registered_record(int(getattr(model, "width", 32)), k, spec)
        if spec is not None:
            record = replace(record, keypoint_spec=spec, num_joints=spec.num_joints)
        self.record = record.with_inference(resolve_settings(record.inference, input_size, params))
        self.description = description or record.name
        if precision == "int8" or record.precision == "int8":  # a quantized ONNX network
            precision = check_int8(precision, record, model, self.device)
        else:
            check_precision(precision, self.device)
        self.precision = precision
        self.channels_last = channels_last
        self.batch_flip = self.device.type == "cuda" if batch_flip is None else batch_flip
        self.network = model  # what forward() runs
        if isinstance(model, nn.Module):
            model, self.network = prepare_network(
                model,
                self.device,
                fuse_bn=fuse_bn,
                channels_last=channels_last,
                compile=compile,
                precision=precision,
            )
        self.model = model

    @property
    def spec(self) -> KeypointSpec:
        return self.record.keypoint_spec

    @property
    def params(self) -> InferenceSettings:
        """The inference settings in use (decoder fields and the input size)."""
        return self.record.inference

    @property
    def input_size(self) -> int:
        return self.record.inference.input_size

    @classmethod
    def from_loaded(cls, loaded: LoadedModel, **kwargs: Any) -> Predictor:
        """A Predictor of what :func:`hrpose.loading.load_model` returned."""
        kwargs.setdefault("description", loaded.description)
        return cls(loaded.network, record=loaded.record, **kwargs)

    @classmethod
    def from_weights(
        cls,
        weights: str | Path,
        *,
        width: int | None = None,
        num_joints: int | None = None,
        spec: KeypointSpec | None = None,
        backend: str | None = None,
        **kwargs: Any,
    ) -> Predictor:
        """From an official, mmpose 0.x or hrpose checkpoint, an ``.onnx`` file, a registered
        name or URL, or ``"random"`` (an untrained HigherHRNet, width 32 unless given); the
        file's record gives the settings, keyword arguments override them."""
        loaded = load_model(weights, device=kwargs.get("device", "cpu"), backend=backend,
                            spec=spec, width=width, num_joints=num_joints)  # fmt: skip
        return cls.from_loaded(loaded, **kwargs)

    @classmethod
    def from_pretrained(cls, name: str = "", **kwargs: Any) -> Predictor:
        """From a registered name (default: the default COCO model) or an http(s) URL: the file
        is downloaded and verified on first use, then read from the cache (``hrpose.hub``)."""
        return cls.from_weights(name or DEFAULT_POSE, **kwargs)

    @classmethod
    def from_onnx(cls, path: str | Path, **kwargs: Any) -> Predictor:
        """An exported model run by ONNX Runtime; its metadata's record gives the settings."""
        return cls.from_weights(path, backend="onnxruntime", **kwargs)

    def forward(self, image: np.ndarray) -> tuple[list, list | None, list[torch.Tensor]]:
        """Network outputs (float32) per scale for the image and (flip test) its mirror."""
        return self.forward_batch([image])[0]

    def forward_batch(
        self, images: Sequence[np.ndarray]
    ) -> list[tuple[list, list | None, list[torch.Tensor]]]:
        """``forward`` of each same-size image, as one network batch per scale (with the mirrors
        in the same batch when ``batch_flip``), so a GPU runs few large calls instead of many."""
        if len({np.shape(im) for im in images}) > 1:
            raise ValueError("forward_batch needs images of one size; got several")
        return self.forward_prepared([self.prepare(im) for im in images])

    @torch.inference_mode()
    def forward_prepared(
        self, prepared: Sequence[PreparedImage]
    ) -> list[tuple[list, list | None, list[torch.Tensor]]]:
        """:meth:`forward_batch` of images already through :meth:`prepare` (e.g. in DataLoader
        workers): one network batch per scale."""
        n = len(prepared)
        if len({p.image_size for p in prepared}) > 1:
            raise ValueError("forward_prepared needs images of one size; got several")
        outs: list[list] = [[] for _ in range(n)]
        flips: list[list] = [[] for _ in range(n)]
        for si in range(len(self.params.scales)):
            batch = torch.stack([p.inputs[si] for p in prepared]).to(self.device)
            if self.params.flip and self.batch_flip:
                y = self._run(torch.cat([batch, torch.flip(batch, [3])]))
                y, y_flip = [t[:n] for t in y], [t[n:] for t in y]
            else:
                y = self._run(batch)
                y_flip = self._run(torch.flip(batch, [3])) if self.params.flip else []
            for i in range(n):  # per image: views of the batch, batch 1 as decode expects
                outs[i].append([t[i : i + 1] for t in y])
                flips[i].append([t[i : i + 1] for t in y_flip])
        first = self.params.scales.index(1.0)
        flip = self.params.flip
        return [(o, f if flip else None, o[first]) for o, f in zip(outs, flips, strict=True)]

    def _run(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """One network call with the configured memory format and precision; float32 out."""
        if not isinstance(self.model, nn.Module):
            return [t.float() for t in self.network(batch)]
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        dtype = AUTOCAST_DTYPES[self.precision]
        # bf16: the network is a runtime.BackboneAutocast, which turns autocast off in the heads
        with torch.autocast(self.device.type, dtype or torch.float32, enabled=dtype is not None):
            y = self.network(batch)
        return [t.float().contiguous() for t in y]

    def predict(self, image: np.ndarray) -> Prediction:
        """People (original image pixels) and the scale-1 outputs for one RGB uint8 image."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """``predict`` of each same-size RGB uint8 image (e.g. video frames) with one network
        batch per scale; the same people as one ``predict`` call per image."""
        return self.predict_prepared([self.prepare(image) for image in images])

    def prepare(self, image: np.ndarray) -> PreparedImage:
        """The network inputs of one RGB uint8 image under this predictor's settings."""
        return prepare_image(image, self.input_size, self.params.scales)

    def predict_prepared(self, prepared: Sequence[PreparedImage]) -> list[Prediction]:
        """:meth:`predict_batch` of images already through :meth:`prepare` (same people: the
        one code path both take)."""
        if not prepared:
            return []
        scales = tuple(self.params.scales)
        for p in prepared:
            if p.input_size != self.input_size or p.scales != scales:
                raise ValueError(
                    f"an image prepared for input {p.input_size}, scales {list(p.scales)} given to "
                    f"a predictor of input {self.input_size}, scales {list(scales)}"
                )
        preds = []
        for p, (outs, flips, first) in zip(prepared, self.forward_prepared(prepared), strict=True):
            people = decode(
                outs,
                list(p.transforms),
                flip_outputs=flips,
                spec=self.spec,
                params=self.params.decode_params(),
            )
            preds.append(Prediction(people, first, p.transforms[scales.index(1.0)]))
        return preds

    def __call__(self, image: np.ndarray) -> People:
        return self.predict(image).people
