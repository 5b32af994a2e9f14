"""Reading images for inference: any common file as RGB uint8, or a clear one-line error."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


class ImageReadError(ValueError):
    """An input image that cannot be used; the message names the file and the problem."""


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB with EXIF orientation applied; grayscale, RGBA and 16-bit inputs are
    converted. Raises :class:`ImageReadError` for missing, empty or undecodable files."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file")
    return decode_image(np.fromfile(str(path), dtype=np.uint8), str(path))


def decode_image(data: bytes | np.ndarray, name: str = "image") -> np.ndarray:
    """Encoded image bytes (a file's content, an upload) -> (H, W, 3) uint8 RGB, decoded exactly
    as :func:`read_image` decodes files; ``name`` starts the error message."""
    buf = np.frombuffer(data, np.uint8) if isinstance(data, bytes | bytearray) else data
    if buf.size == 0:
        raise ImageReadError(f"{name}: empty file")
    # IMREAD_COLOR: 3 channels, 8 bits, EXIF rotation applied (16-bit is scaled down, alpha dropped)
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageReadError(
            f"{name}: not a readable image (corrupt, truncated, or an unsupported format)"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def list_images(folder: str | Path) -> list[Path]:
    """Image files of a folder (not recursive), sorted by name."""
    return sorted(
        p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
