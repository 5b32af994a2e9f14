"""What one request may send: body size, pixel count, content types and per-request overrides.

Every refusal is a :class:`RequestError` with an HTTP status and a message that says what to
send instead; the app turns it into a JSON error. Nothing here touches the model.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from hrpose.data.images import ImageReadError, decode_image, open_image_header
from hrpose.viz.draw import JOINT_THRESHOLD, LIMB_RATIO, PERSON_THRESHOLD

# Raw-body content types and the image format each must hold (checked on the bytes too).
IMAGE_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG"}
MULTIPART = "multipart/form-data"

# Query parameters a request may set: drawing thresholds, flip, and whether to answer a JPEG.
OVERRIDES = ("draw", "person_threshold", "joint_threshold", "flip")
# Settings of the model (its record / the server's command line), never of one request.
MODEL_LEVEL = frozenset(
    {
        "input_size", "detection_threshold", "det_threshold", "tag_threshold", "max_people",
        "nms_kernel", "adjust", "refine", "scales", "use_detection_val", "ignore_too_much",
        "limb_ratio", "precision", "device", "weights", "compile", "batch", "batch_size",
    }
)  # fmt: skip
TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


class RequestError(Exception):
    """A request the server refuses: ``status`` (4xx/503) and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    """Upload limits: bytes of the body and pixels (width x height) of the decoded image."""

    max_upload_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1 or self.max_pixels < 1:
            raise ValueError("max_upload_bytes and max_pixels must be >= 1")


@dataclass(frozen=True)
class Overrides:
    """The per-request settings (query parameters), with the server's defaults filled in."""

    draw: bool = False
    flip: bool | None = None  # None: the model's flip setting
    person_threshold: float = PERSON_THRESHOLD
    joint_threshold: float = JOINT_THRESHOLD
    limb_ratio: float = LIMB_RATIO  # the server's; not a per-request setting


def _flag(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    raise RequestError(400, f"query parameter {name}={value!r}: expected 1/0, true/false")


def _fraction(name: str, value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not 0.0 <= x <= 1.0:  # NaN fails too
        raise RequestError(400, f"query parameter {name}={value!r}: expected a number in [0, 1]")
    return x


def parse_overrides(items: list[tuple[str, str]], base: Overrides) -> Overrides:
    """Query parameters (name, value) pairs -> the request's settings; unknown, repeated and
    model-level names are refused with the list of allowed ones."""
    allowed = ", ".join(OVERRIDES)
    seen: dict[str, str] = {}
    for name, value in items:
        if name in MODEL_LEVEL:
            raise RequestError(
                400,
                f"{name} is a model-level setting, fixed when the server starts (see GET "
                f"/v1/model); per-request overrides allowed: {allowed}",
            )
        if name not in OVERRIDES:
            raise RequestError(400, f"unknown query parameter {name!r}; allowed: {allowed}")
        if name in seen:
            raise RequestError(400, f"query parameter {name} given twice")
        seen[name] = value
    kw: dict = {}
    for name in ("draw", "flip"):
        if name in seen:
            kw[name] = _flag(name, seen[name])
    for name in ("person_threshold", "joint_threshold"):
        if name in seen:
            kw[name] = _fraction(name, seen[name])
    return Overrides(**{**base.__dict__, **kw})


def check_content_length(headers: Mapping[str, str], limits: Limits) -> None:
    """Refuse a declared body over the limit before reading any of it."""
    length = headers.get("content-length")
    if length is None:
        return
    if not length.isdigit():
        raise RequestError(400, f"Content-Length {length!r} is not a number of bytes")
    if int(length) > limits.max_upload_bytes:
        raise RequestError(413, _too_big(int(length), limits))


def _too_big(size: int, limits: Limits) -> str:
    return (
        f"body of {size} bytes is over the upload limit of {limits.max_upload_bytes} bytes "
        "(server flag --max-upload-mb)"
    )


def check_size(size: int, limits: Limits) -> None:
    if size > limits.max_upload_bytes:
        raise RequestError(413, _too_big(size, limits))


def content_kind(content_type: str | None) -> str:
    """``"raw"`` for an image/jpeg or image/png body, ``"multipart"`` for a form upload."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media in IMAGE_TYPES:
        return "raw"
    if media == MULTIPART:
        return "multipart"
    raise RequestError(
        415,
        f"Content-Type {media or '(none)'!r} is not accepted: send the image as the body with "
        f"Content-Type image/jpeg or image/png, or as a file field of {MULTIPART}",
    )


def read_image_bytes(data: bytes, limits: Limits, declared: str | None = None) -> np.ndarray:
    """Checked upload bytes -> (H, W, 3) uint8 RGB, decoded as ``hrpose predict`` decodes files.

    The header is read first (Pillow reads the size without decoding), so a small file declaring
    a huge image is refused before any pixel memory is taken; a truncated file is refused
    instead of being decoded with grey filler.
    """
    if not data:
        raise RequestError(400, "empty body: send a JPEG or PNG image")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = open_image_header(data, sorted(set(IMAGE_TYPES.values())))
        except Image.DecompressionBombError as e:
            raise RequestError(
                413,
                f"image has too many pixels ({e}); this server takes up to {limits.max_pixels} "
                "pixels (server flag --max-pixels)",
            ) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise RequestError(422, "not a JPEG or PNG image") from None
        w, h = im.size
        if w * h > limits.max_pixels:
            raise RequestError(
                413,
                f"image of {w}x{h} = {w * h} pixels is over the limit of {limits.max_pixels} "
                "pixels (server flag --max-pixels)",
            )
        if declared in IMAGE_TYPES and IMAGE_TYPES[declared] != im.format:
            raise RequestError(415, f"Content-Type {declared} but the body is a {im.format} image")
        try:
            im.load()  # decodes fully: raises on truncated or corrupt data
        except (OSError, SyntaxError, ValueError) as e:
            raise RequestError(422, f"corrupt or truncated {im.format} image ({e})") from None
        finally:
            im.close()
    try:
        return decode_image(data, "upload")
    except ImageReadError as e:
        raise RequestError(422, str(e)) from None
