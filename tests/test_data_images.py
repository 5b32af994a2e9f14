"""Inference image reading: every awkward input becomes RGB uint8 or a clear error."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hrpose.data.images import ImageReadError, list_images, read_image


def test_kinds_of_images(tmp_path) -> None:
    gray = np.tile(np.arange(40, dtype=np.uint8), (30, 1))
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    rgba = np.zeros((20, 10, 4), np.uint8)
    rgba[..., 2], rgba[..., 3] = 255, 128  # red (BGR order on disk), half transparent
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    deep = (np.ones((8, 8, 3)) * 40000).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    cv2.imwrite(str(tmp_path / "tiny.jpg"), np.full((1, 1, 3), 200, np.uint8))
    g = read_image(tmp_path / "gray.png")
    assert g.shape == (30, 40, 3) and g.dtype == np.uint8 and (g[..., 0] == g[..., 2]).all()
    r = read_image(tmp_path / "rgba.png")
    assert r.shape == (20, 10, 3) and r[0, 0].tolist() == [255, 0, 0]
    d = read_image(tmp_path / "deep.png")
    assert d.dtype == np.uint8 and d[0, 0, 0] == 40000 >> 8
    assert read_image(tmp_path / "tiny.jpg").shape == (1, 1, 3)
    assert [p.name for p in list_images(tmp_path)] == [
        "deep.png",
        "gray.png",
        "rgba.png",
        "tiny.jpg",
    ]


def _jpeg_with_orientation(path, image, orientation: int) -> None:
    """A JPEG whose APP1 EXIF segment says ``orientation`` (written by hand, no PIL needed)."""
    ok, buf = cv2.imencode(".jpg", image)
    data = buf.tobytes()
    tiff = (b"MM\x00\x2a\x00\x00\x00\x08" + b"\x00\x01" + b"\x01\x12\x00\x03\x00\x00\x00\x01"
            + orientation.to_bytes(2, "big") + b"\x00\x00" + b"\x00\x00\x00\x00")  # fmt: skip
    app1 = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1
    path.write_bytes(data[:2] + segment + data[2:])


def test_exif_rotation_is_applied(tmp_path) -> None:
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :5] = 255  # white band on the left
    _jpeg_with_orientation(tmp_path / "rot.jpg", image, 6)  # "rotate 90 CW to display"
    out = read_image(tmp_path / "rot.jpg")
    assert out.shape == (40, 20, 3)
    assert out[:5].mean() > 200 and out[-5:].mean() < 50  # the band is now at the top


def test_bad_files(tmp_path) -> None:
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "absent.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty file"):
        read_image(tmp_path / "empty.jpg")
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(ImageReadError, match="not a readable image"):
        read_image(tmp_path / "text.jpg")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)
