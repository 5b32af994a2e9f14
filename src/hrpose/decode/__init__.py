"""Heatmaps + tags -> people: the official HigherHRNet test-time decoder, vectorised.

Pure functions, no nn.Module and no I/O: preprocess (input geometry), aggregate (resolutions,
flip, scales), peaks (NMS, top-k), group (tag matching with classic Munkres), refine (quarter
offsets, missing joints), pipeline (``decode``).
"""

from hrpose.affine import Transform, affine_transform, input_size_for
from hrpose.decode.pipeline import decode, decode_maps
from hrpose.decode.preprocess import preprocess
from hrpose.structures import DecodeParams

__all__ = [
    "DecodeParams",
    "Transform",
    "affine_transform",
    "decode",
    "decode_maps",
    "input_size_for",
    "preprocess",
]
