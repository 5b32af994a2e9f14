"""Static INT8 quantization: a HigherHRNet to an INT8 ONNX file (ONNX Runtime QDQ) that keeps
its model record, calibrated on images preprocessed exactly as :class:`~hrpose.predict.Predictor`
preprocesses them.

Weights are int8 per output channel (in a 7-bit range, see :func:`quantize_model`), activations
uint8 per tensor (min/max over the calibration inputs). The two final 1x1 convolutions
(``final_layers``: heatmaps and tags at 1/4, heatmaps at 1/2) stay fp32: their outputs are the
peak heights and tag values the decoder thresholds and compares, and they are a small share of
the multiply-adds; the graph's outputs are those fp32 tensors (:func:`unround_outputs`), only
the Concat that passes the 1/4 maps to the deconvolution reads a rounded copy. The file's
metadata holds the record (``precision`` int8), ``precision``, ``quantization`` (method and
calibration) and ``architecture_fingerprint`` (the convolution layout), which loading checks
against the record.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hrpose.data.images import IMAGE_SUFFIXES, ImageReadError, list_images, read_image
from hrpose.export import export_onnx
from hrpose.record import ModelRecord

METHOD = "onnxruntime-static-qdq"
HEAD = "final_layers"  # the module whose convolutions stay fp32
DEFAULT_MAX_IMAGES = 16


class QuantizeError(ValueError):
    """Calibration input or a model that cannot be quantized; the message names the fix."""


def calibration_files(folders: Sequence[str | Path], max_images: int | None = None) -> list[Path]:
    """The image files of ``folders`` (each sorted by name, folders in order), at most
    ``max_images`` spread evenly over them; a missing folder or no images is an error."""
    if not folders:
        raise QuantizeError("no calibration folder given: pass --calibration DIR (images)")
    files: list[Path] = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            what = "a file, not a folder" if folder.exists() else "no such folder"
            raise QuantizeError(
                f"calibration folder {folder}: {what}; pass a folder of images (e.g. a few "
                "frames of the scenes the model will see)"
            )
        found = list_images(folder)
        if not found:
            raise QuantizeError(
                f"calibration folder {folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        files += found
    if max_images is not None:
        if max_images < 1:
            raise QuantizeError(f"max_images must be >= 1, got {max_images}")
        if len(files) > max_images:  # evenly over the list, so every folder contributes
            picks = np.linspace(0, len(files) - 1, max_images).round().astype(int)
            files = [files[i] for i in picks]
    return files


def read_calibration_images(paths: Iterable[str | Path]) -> list[np.ndarray]:
    """RGB uint8 images of ``paths``; an unreadable one is an error naming it."""
    images = []
    for path in paths:
        try:
            images.append(read_image(path))
        except ImageReadError as e:
            raise QuantizeError(
                f"calibration image {e}; remove or replace it (every calibration image is used)"
            ) from None
    return images


def calibration_inputs(images: Iterable[np.ndarray], record: ModelRecord) -> list[np.ndarray]:
    """(1, 3, h, w) float32 network inputs of RGB images, as the Predictor makes them: every
    scale of the record's settings at its input size, and the mirror where it flips."""
    from hrpose.predict import prepare_image

    s = record.inference
    out = []
    for image in images:
        for x in prepare_image(image, s.input_size, s.scales).inputs:
            out.append(x[None].numpy())
            if s.flip:
                out.append(np.ascontiguousarray(x.flip(-1)[None].numpy()))
    return out


def head_nodes(proto: Any) -> list[str]:
    """Names of the ONNX nodes of the final heatmap/tag convolutions (kept fp32)."""
    return [n.name for n in proto.graph.node if n.op_type == "Conv" and f"/{HEAD}." in n.name]


def conv_weight_shapes(proto: Any) -> list[tuple[int, ...]]:
    """Weight shape of every (transposed) convolution of an ONNX graph, fp32 or quantized (the
    int8 initializer behind a DequantizeLinear)."""
    inits = {t.name: tuple(t.dims) for t in proto.graph.initializer}
    dq = {n.output[0]: n.input[0] for n in proto.graph.node if n.op_type == "DequantizeLinear"}
    shapes = []
    for n in proto.graph.node:
        if n.op_type in ("Conv", "ConvTranspose"):
            name = n.input[1]
            shapes.append(inits.get(name) or inits.get(dq.get(name, ""), ()))
    return shapes


def fingerprint(shapes: Iterable[tuple[int, ...]]) -> str:
    """Architecture fingerprint: SHA-256 (16 hex digits) of the sorted convolution weight shapes,
    the same for a torch model and its ONNX graph, whatever the node order or quantization."""
    text = ";".join(sorted("x".join(map(str, s)) for s in shapes))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_fingerprint(model: nn.Module) -> str:
    """:func:`fingerprint` of a torch model's convolutions."""
    convs = (m for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d))
    return fingerprint(tuple(m.weight.shape) for m in convs)


def record_fingerprint(record: ModelRecord) -> str:
    """:func:`fingerprint` of the architecture a record names (built without memory)."""
    from hrpose.models import HigherHRNet

    with torch.device("meta"):
        model = HigherHRNet(record.width, record.num_joints, init_weights=False)
    return model_fingerprint(model)


def head_shape(proto: Any) -> tuple[int, int] | None:
    """(width, joints) the graph's 1/2-resolution heatmap convolution has, None without one."""
    inits = {t.name: tuple(t.dims) for t in proto.graph.initializer}
    for n in proto.graph.node:
        if n.op_type == "Conv" and f"/{HEAD}.1/" in n.name and n.input[1] in inits:
            out, width = inits[n.input[1]][:2]
            return int(width), int(out)
    return None


def check_architecture(proto: Any, record: ModelRecord, name: str | Path) -> None:
    """Refuse a quantized graph whose convolutions are not the architecture its record names."""
    stored = {p.key: p.value for p in proto.metadata_props}.get("architecture_fingerprint")
    graph = fingerprint(conv_weight_shapes(proto))
    expected = record_fingerprint(record)
    if graph != expected or (stored is not None and stored != graph):
        shape = head_shape(proto)
        what = f"W{shape[0]} with {shape[1]} joints" if shape else "another architecture"
        raise QuantizeError(
            f"{name}: the graph is {what} (convolution fingerprint {graph}) but its record says "
            f"{record.name} with {record.num_joints} joints ({expected}); the file was edited or "
            "mixed up: quantize the original weights again (hrpose quantize)"
        )


CALIBRATIONS = ("minmax", "mean-minmax", "percentile")
DEFAULT_PERCENTILE = 99.99


def activation_tensors(proto: Any) -> list[str]:
    """The float activations of a graph that quantization may round: its input and every node
    output (not initializers or constants)."""
    import onnx

    proto = onnx.shape_inference.infer_shapes(proto)
    floats = {vi.name for vi in [*proto.graph.value_info, *proto.graph.output, *proto.graph.input]
              if vi.type.tensor_type.elem_type == 1}  # fmt: skip
    inits = {t.name for t in proto.graph.initializer}
    names = [i.name for i in proto.graph.input]
    names += [o for n in proto.graph.node if n.op_type != "Constant" for o in n.output
              if o in floats and o not in inits]  # fmt: skip
    return list(dict.fromkeys(names))


Ranges = dict[str, tuple[float, float]]
MEAN_MINMAX = "mean-minmax"


def percentile_range_sets(
    path: str | Path, inputs: Sequence[np.ndarray], percentiles: Sequence[float]
) -> dict[float | str, Ranges]:
    """Activation ranges of several calibrations from one pass over the inputs.

    For each of ``percentiles``: each activation's (low, high) clipped at it (and at 100 - it)
    in every input, the widest over the inputs; a range min/max would stretch to a few
    outliers (a trained model's activations can reach 10-15x their 99.9th percentile), leaving
    the bulk of the values a handful of the 256 levels. Under :data:`MEAN_MINMAX`: the mean over
    the inputs of each input's min and max, which the rare outlier moves less."""
    import onnx
    import onnxruntime as ort

    bad = [p for p in percentiles if not 50.0 < p <= 100.0]
    if bad:
        raise QuantizeError(f"percentiles must be in (50, 100], got {list(percentiles)}")
    proto = onnx.load(str(path))
    names = activation_tensors(proto)
    outputs = {o.name for o in proto.graph.output}
    for name in names:
        if name not in outputs:
            proto.graph.output.append(onnx.helper.make_tensor_value_info(name, 1, None))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    wanted = [o.name for o in session.get_outputs() if o.name in set(names)]
    sets: dict[float | str, Ranges] = {p: {} for p in percentiles}
    sums = np.zeros((len(wanted), 2))
    for x in inputs:
        values = session.run(wanted, {session.get_inputs()[0].name: x})
        for j, (name, v) in enumerate(zip(wanted, values, strict=True)):
            flat = v.reshape(-1)
            sums[j] += flat.min(), flat.max()
            ks = {p: (len(flat) - 1) * (100.0 - p) / 100.0 for p in percentiles}
            idx = {p: (int(np.floor(k)), int(np.ceil(len(flat) - 1 - k))) for p, k in ks.items()}
            if not idx:
                continue
            part = np.partition(flat, sorted({i for pair in idx.values() for i in pair}))
            for p, (lo_k, hi_k) in idx.items():
                lo, hi = float(part[lo_k]), float(part[hi_k])
                old = sets[p].get(name, (lo, hi))
                sets[p][name] = (min(old[0], lo), max(old[1], hi))
    mean = sums / max(len(inputs), 1)
    sets[MEAN_MINMAX] = {
        n: (float(lo), float(hi)) for n, (lo, hi) in zip(wanted, mean, strict=True)
    }
    return sets


def percentile_ranges(
    path: str | Path, inputs: Sequence[np.ndarray], percentile: float = DEFAULT_PERCENTILE
) -> dict[str, tuple[float, float]]:
    """Each activation's range clipped at ``percentile`` (:func:`percentile_range_sets`)."""
    return percentile_range_sets(path, inputs, [percentile])[percentile]


class Prepared:
    """A model exported and pre-processed for quantization once, so that several calibrations
    of it (:func:`search_calibration`) share the export and the activation statistics."""

    def __init__(self, model: nn.Module, record: ModelRecord, images: Sequence[np.ndarray],
                 folder: Path, opset: int = 17) -> None:  # fmt: skip
        import onnx
        from onnxruntime.quantization import quant_pre_process

        if not images:
            raise QuantizeError("no calibration images: give at least one image")
        self.record, self.n_images = record, len(images)
        self.fingerprint = model_fingerprint(model)
        self.inputs = calibration_inputs(images, record)
        fp32, self.pre = folder / "fp32.onnx", folder / "pre.onnx"
        export_onnx(model, fp32, record, opset)  # exports a CPU copy: the model is left as is
        # no symbolic shape inference: it fails on the dynamic Resize of the fusion layers
        quant_pre_process(str(fp32), str(self.pre), skip_symbolic_shape=True)
        self.keep_fp32 = head_nodes(onnx.load(str(self.pre)))
        if len(self.keep_fp32) != 2:
            raise QuantizeError(f"expected the 2 final convolutions in the graph: {self.keep_fp32}")
        self.meta = {p.key: p.value for p in onnx.load(str(fp32)).metadata_props}

    def write(
        self,
        output: str | Path,
        ranges: dict[str, tuple[float, float]] | None = None,
        activations: str = "min/max calibration",
        fp32_nodes: Sequence[str] = (),
    ) -> Path:
        """Quantize to ``output``: activation ranges min/max over the inputs, or ``ranges``
        where given (described by ``activations`` in the metadata); ``fp32_nodes``: graph nodes
        left fp32 besides the heads (``benchmarks/bench_precision.py --segments``)."""
        import onnx
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        # ranges cover every activation, so ONNX Runtime's own min/max pass (which the
        # overrides replace) needs only one input
        inputs = self.inputs[:1] if ranges else self.inputs

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.batches = iter(inputs)

            def get_next(self) -> dict[str, np.ndarray] | None:
                x = next(self.batches, None)
                return None if x is None else {"image": x}

        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        partial = output.with_name(output.name + ".partial")  # a kill leaves no half file
        overrides = {name: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}]
                     for name, (lo, hi) in (ranges or {}).items()}  # fmt: skip
        quantize_static(
            str(self.pre),
            str(partial),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            nodes_to_exclude=[*self.keep_fp32, *fp32_nodes],
            # 7-bit weights: without VNNI, ONNX Runtime's u8s8 kernels (vpmaddubsw) saturate a
            # pair of 8-bit products at int16, which cost w8-coco-mini 0.07 mean OKS on
            # coco-mini; 7 bits cannot saturate, and cost no speed (benchmarks/README.md)
            reduce_range=True,
            extra_options={"TensorQuantOverrides": overrides} if overrides else None,
        )
        int8_record = replace(self.record, precision="int8")
        proto = onnx.load(str(partial))
        unround_outputs(proto)
        meta = dict(self.meta)
        meta.update({
            "model_record": json.dumps(int8_record.to_dict()),
            "precision": "int8",
            "quantization": json.dumps({
                "method": METHOD,
                "weights": "int8 (7-bit range), symmetric, per output channel",
                "activations": "uint8, per tensor, " + activations,
                "fp32_nodes": [*self.keep_fp32, *fp32_nodes],
                "calibration_images": self.n_images,
                "calibration_inputs": len(self.inputs),
            }),
            "architecture_fingerprint": self.fingerprint,
        })  # fmt: skip
        del proto.metadata_props[:]  # quantize_static may keep, drop or rename them: write all
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        try:
            check_architecture(proto, int8_record, output)
        except QuantizeError:
            partial.unlink(missing_ok=True)
            raise
        return save_atomically(proto, output)


def unround_outputs(proto: Any) -> list[str]:
    """Make each graph output the fp32 tensor its node computes, where ONNX Runtime made it a
    DequantizeLinear's: a fp32 head's output that a quantized node also reads (the 1/4 heatmaps
    and tags feed the deconvolution's Concat) is rounded for that reader, and the graph output
    became the rounded copy, 256 levels for the peaks and tags the decoder compares. The readers
    keep the rounded copy; returns the outputs changed."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    changed = []
    for out in proto.graph.output:
        dq = producers.get(out.name)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = producers.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue
        source, rounded = q.input[0], out.name + "_rounded"
        for old, new in ((out.name, rounded), (source, out.name)):  # in this order
            for node in proto.graph.node:
                for field in (node.input, node.output):
                    for i, name in enumerate(field):
                        if name == old:
                            field[i] = new
        changed.append(out.name)
    return changed


def save_atomically(proto: Any, output: Path) -> Path:
    """Save an ONNX model to ``output`` through a ``.partial`` file: a kill leaves no half file."""
    import onnx

    partial = output.with_name(output.name + ".partial")
    onnx.save(proto, str(partial))
    os.replace(partial, output)
    return output


def quantize_model(
    model: nn.Module,
    record: ModelRecord,
    images: Sequence[np.ndarray],
    output: str | Path,
    *,
    opset: int = 17,
    calibration: str = "minmax",
    percentile: float = DEFAULT_PERCENTILE,
) -> Path:
    """Write ``model`` (a HigherHRNet) as a static INT8 ONNX file calibrated on ``images``
    (RGB uint8, preprocessed under ``record``'s inference settings); returns the path.

    ``calibration``: ``minmax`` (each activation's range over the inputs), ``mean-minmax``
    (the mean of each input's range) or ``percentile`` (clipped at ``percentile``,
    :func:`percentile_ranges`); the last two are for models with outlier activations."""
    if calibration not in CALIBRATIONS:
        raise QuantizeError(f"calibration {calibration!r}: use one of {', '.join(CALIBRATIONS)}")
    if not images:
        raise QuantizeError("no calibration images: give at least one image")
    with tempfile.TemporaryDirectory(prefix="hrpose-quantize-") as tmp:
        prepared = Prepared(model, record, images, Path(tmp), opset)
        if calibration == "minmax":
            return prepared.write(output)
        if calibration == MEAN_MINMAX:
            ranges = percentile_range_sets(prepared.pre, prepared.inputs, ())[MEAN_MINMAX]
            return prepared.write(output, ranges, "mean of each input's min/max calibration")
        ranges = percentile_ranges(prepared.pre, prepared.inputs, percentile)
        return prepared.write(output, ranges, f"{percentile} percentile calibration")
