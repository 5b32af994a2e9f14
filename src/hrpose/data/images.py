"""Reading image files as RGB uint8, or a clear one-line error; the one place images are decoded.

One orientation rule everywhere: the stored pixels are used and EXIF orientation is ignored,
as the official COCO loader (``cv2.IMREAD_IGNORE_ORIENTATION``) and torchvision's Pillow loader
(no ``ImageOps.exif_transpose``) do; COCO keypoints are annotated in those raw pixels, so
predicting, evaluating and training see the same picture. :func:`read_image` (OpenCV, as the
official pose code) serves pose estimation; :func:`read_image_pil` (Pillow, as torchvision's
``ImageFolder``) serves the ImageNet classifier, so ``hrpose classify`` sees what training saw.

A JPEG cut short is an error in both, whatever the decoder would do with it (OpenCV 4.x returns
the decoded part with the rest grey, Pillow with ``LOAD_TRUNCATED_IMAGES`` too): the bytes must
hold an end-of-image marker after the first scan (:func:`jpeg_truncated`; for the usual file
ending in the marker that is a two-byte test, about 1 us against a 2 ms decode of a COCO image).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


class ImageReadError(ValueError):
    """An input image that cannot be used; the message names the file and the problem."""


def _check_file(path: Path) -> None:
    """Raise :class:`ImageReadError` for a missing, folder or empty path, before decoding."""
    if not path.exists():
        raise ImageReadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file")


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of the stored pixels (EXIF orientation ignored); grayscale, RGBA and
    16-bit inputs are converted. Raises :class:`ImageReadError` for missing, empty or
    undecodable files."""
    path = Path(path)
    _check_file(path)
    return decode_image(np.fromfile(str(path), dtype=np.uint8), str(path))


def decode_image(data: bytes | np.ndarray, name: str = "image") -> np.ndarray:
    """Encoded image bytes (a file's content, an upload) -> (H, W, 3) uint8 RGB, decoded exactly
    as :func:`read_image` decodes files; ``name`` starts the error message."""
    buf = np.frombuffer(data, np.uint8) if isinstance(data, bytes | bytearray) else data
    if buf.size == 0:
        raise ImageReadError(f"{name}: empty file")
    # IMREAD_COLOR: 3 channels, 8 bits (16-bit is scaled down, alpha dropped);
    # IMREAD_IGNORE_ORIENTATION: raw pixels, as the official loader and the COCO annotations
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is not None and jpeg_truncated(buf):
        raise ImageReadError(f"{name}: truncated JPEG (no end-of-image marker: the file was cut "
                             "short, e.g. by an interrupted copy or download)")  # fmt: skip
    if image is None:
        raise ImageReadError(
            f"{name}: not a readable image (corrupt, truncated, or an unsupported format)"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image_pil(path: str | Path) -> Image.Image:
    """RGB Pillow image of the stored pixels (EXIF orientation ignored), decoded as torchvision's
    ``ImageFolder`` does. Raises :class:`ImageReadError` for missing, empty or undecodable files."""
    import io

    path = Path(path)
    _check_file(path)
    data = path.read_bytes()
    if jpeg_truncated(np.frombuffer(data, np.uint8)):
        raise ImageReadError(f"{path}: truncated JPEG (no end-of-image marker: the file was cut "
                             "short, e.g. by an interrupted copy or download)")  # fmt: skip
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as e:
        raise ImageReadError(
            f"{path}: not a readable image (corrupt, truncated, or an unsupported format: {e})"
        ) from e


def jpeg_truncated(buf: np.ndarray) -> bool:
    """True for JPEG bytes (uint8 array) with no end-of-image marker after the first scan.

    Inside entropy-coded data a 0xFF byte is always followed by 0x00 or a restart marker, so an
    0xFFD9 there is the end of the image: data appended after it (motion photos, camera
    trailers) is fine; a marker inside an EXIF thumbnail is skipped with its header segment.
    Not a JPEG (no 0xFFD8 start): False, the decoder judges it.
    """
    n = int(buf.size)
    if n < 4 or buf[0] != 0xFF or buf[1] != 0xD8:
        return False
    if buf[-2] == 0xFF and buf[-1] == 0xD9:
        return False  # the common case
    pos = 2
    while pos + 4 <= n:  # header segments up to the first start-of-scan
        if buf[pos] != 0xFF:
            return False  # not a marker: corrupt in some other way, the decoder decides
        marker = int(buf[pos + 1])
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = (int(buf[pos + 2]) << 8) | int(buf[pos + 3])
        pos += 2 + length
        if marker == 0xDA:
            return buf[pos:].tobytes().find(b"\xff\xd9") < 0
    return True  # the file ends inside its headers


def list_images(folder: str | Path) -> list[Path]:
    """Image files of a folder (not recursive), sorted by name."""
    return sorted(
        p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def open_image_header(data: bytes, formats: list[str]) -> Image.Image:
    """A lazily decoded Pillow image of encoded bytes: size and format read from the header
    only (``.load()`` decodes), so a limit can refuse a decompression bomb before any pixel
    memory is taken. The pixels a model sees still come from :func:`decode_image`."""
    import io

    return Image.open(io.BytesIO(data), formats=formats)
