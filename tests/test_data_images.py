"""Inference image reading: every awkward input becomes RGB uint8 or a clear error."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import hrpose
from hrpose.data.images import ImageReadError, list_images, read_image, read_image_pil


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


def _rotated_jpeg(path: Path) -> np.ndarray:
    """A 20x40 JPEG whose EXIF says Orientation=6 ("rotate 90 CW to display"), written by
    Pillow; returns the stored (unrotated) pixels: a white band on the left."""
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :5] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    return stored


def _assert_stored_layout(image: np.ndarray | Image.Image) -> None:
    """The stored pixel layout: 20 rows by 40 columns, the white band in the left columns."""
    a = np.asarray(image)
    assert a.shape == (20, 40, 3)
    assert a[:, :4].mean() > 200 and a[:, -30:].mean() < 50


def test_exif_orientation_is_ignored_by_every_reader(tmp_path: Path) -> None:
    """One rule everywhere (the official COCO loader's): the stored pixels, EXIF orientation
    ignored, by predict's, the COCO dataset's (training, evaluation, validation pictures) and
    the ImageNet dataset's readers, since annotations are in raw pixels."""
    from hrpose.data.coco import read_image_rgb
    from hrpose.data.imagenet import ImageFolder, read_pil_rgb
    from hrpose.evaluation.pose import predict_images
    from hrpose.structures import People

    path = tmp_path / "cls" / "rot.jpg"
    path.parent.mkdir()
    stored = _rotated_jpeg(path)
    assert Image.open(path).getexif()[0x0112] == 6
    for read in (read_image, read_image_rgb, read_image_pil, read_pil_rgb):
        _assert_stored_layout(read(path))
    _assert_stored_layout(ImageFolder(tmp_path)[0][0])
    seen: list[np.ndarray] = []

    def predict(image: np.ndarray) -> People:
        seen.append(image)
        return People(np.zeros((0, 17, 3)), np.zeros(0), np.zeros((0, 17, 1)))

    predict_images(predict, [(1, "rot.jpg")], path.parent)
    _assert_stored_layout(seen[0])
    # the two decoders agree up to JPEG decoder rounding
    assert np.abs(read_image(path).astype(int) - stored).max() < 40


def test_images_are_decoded_in_one_module() -> None:
    """No module but hrpose.data.images decodes image files, so the orientation rule is one."""
    root = Path(hrpose.__file__).parent
    decoders = ("cv2.imread(", "cv2.imdecode(", "Image.open(", "exif_transpose")
    found = [
        f"{p.relative_to(root)}: {d}"
        for p in sorted(root.rglob("*.py"))
        if p.relative_to(root).as_posix() != "data/images.py"
        for d in decoders
        if d in p.read_text()
    ]
    assert found == []


@pytest.mark.parametrize("read", [read_image, read_image_pil])
def test_bad_files(tmp_path, read) -> None:
    """Both decoders name the file and the problem."""
    with pytest.raises(ImageReadError, match="no such file"):
        read(tmp_path / "absent.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty file"):
        read(tmp_path / "empty.jpg")
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(ImageReadError, match="not a readable image"):
        read(tmp_path / "text.jpg")
    with pytest.raises(ImageReadError, match="folder"):
        read(tmp_path)
