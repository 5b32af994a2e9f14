"""COCO keypoints dataset on the real coco-mini data, and the training sample encoding."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from hrpose.data.coco import CocoKeypoints, DatasetError
from hrpose.data.loaders import build_loader
from hrpose.data.pipeline import PoseTrainTransform, pad_collate
from hrpose.skeleton import COCO17


@pytest.fixture(scope="module")
def mini(coco_mini):
    return CocoKeypoints(coco_mini / "person_keypoints.json", coco_mini / "images")


def test_samples(mini) -> None:
    assert len(mini) == 4 and mini.spec == COCO17
    counts = {}
    for i in range(len(mini)):
        s = mini.load(i)
        assert s.image.dtype == np.uint8 and s.image.shape[2] == 3
        assert s.keypoints.shape[1:] == (17, 3) and s.mask.shape == s.image.shape[:2]
        counts[s.image_id] = (len(s.keypoints), int((~s.mask).sum()))
    assert sum(n for n, _ in counts.values()) == 14
    masked = {i for i, (_, m) in counts.items() if m > 0}
    ann = mini.coco.anns
    assert masked == {ann[1202706]["image_id"], ann[508900]["image_id"]}  # num_keypoints == 0


def test_missing_files(coco_mini, tmp_path) -> None:
    with pytest.raises(DatasetError, match="prepare coco"):
        CocoKeypoints(tmp_path / "annotations" / "person_keypoints_val2017.json", tmp_path)
    images = tmp_path / "images"
    shutil.copytree(coco_mini / "images", images)
    name = sorted(p.name for p in images.iterdir())[0]
    (images / name).unlink()
    ds = CocoKeypoints(coco_mini / "person_keypoints.json", images)
    with pytest.raises(DatasetError, match=name):
        for i in range(len(ds)):
            ds.load(i)
    skip = CocoKeypoints(coco_mini / "person_keypoints.json", images, skip_missing=True)
    assert len(skip) == 3 and skip.skipped == [name]
    (images / sorted(p.name for p in images.iterdir())[0]).write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="corrupt"):
        for i in range(len(skip)):
            skip.load(i)


def test_encoded_batch(mini) -> None:
    mini.transform = PoseTrainTransform(COCO17.flip_index, input_size=256, output_sizes=(64, 128))
    torch.manual_seed(0)
    image, hms, masks, joints = next(iter(build_loader(mini, 2, shuffle=False)))
    assert image.shape == (2, 3, 256, 256) and image.dtype == torch.float32
    assert [h.shape for h in hms] == [(2, 17, 64, 64), (2, 17, 128, 128)]
    assert [m.shape for m in masks] == [(2, 64, 64), (2, 128, 128)]
    assert [j.shape for j in joints] == [(2, 30, 17, 2), (2, 30, 17, 2)]
    assert hms[0].max() == 1.0 and joints[0][..., 1].sum() > 0
    torch.manual_seed(0)
    again = next(iter(build_loader(mini, 2, shuffle=False)))
    assert torch.equal(again[0], image)  # reproducible from the torch seed
    mini.transform = None


def test_test_geometry_batches_pad_and_keep_targets(mini) -> None:
    """Unaugmented samples differ in size; pad_collate pads them and re-indexes the joints so
    each index still points at its joint's heatmap peak."""
    mini.transform = PoseTrainTransform(COCO17.flip_index, 128, (32, 64), params=None)
    torch.manual_seed(0)
    samples = [mini[i] for i in range(len(mini))]
    mini.transform = None
    widths = {s[0].shape[2] for s in samples}
    assert len(widths) > 1  # 640x392 gets a wider canvas than the others at input 128
    image, hms, masks, joints = pad_collate(samples)
    h, w = max(s[0].shape[1] for s in samples), max(widths)
    assert image.shape == (len(samples), 3, h, w)
    for r, stride in enumerate((4, 2)):
        assert hms[r].shape == (len(samples), 17, h // stride, w // stride)
        for b, s in enumerate(samples):
            sh, sw = s[1][r].shape[-2:]
            assert torch.equal(hms[r][b, :, :sh, :sw], s[1][r])
            assert torch.equal(masks[r][b, :sh, :sw], s[2][r])
            assert hms[r][b, :, sh:].abs().sum() == 0 and masks[r][b, :, sw:].sum() == 0
        vis = joints[r][..., 1] > 0
        assert torch.equal(vis, torch.stack([s[3][r][..., 1] > 0 for s in samples]))
        # every visible joint index lands on a heatmap peak (value 1) of the padded maps
        flat = hms[r].reshape(len(samples), -1)
        idx = joints[r][..., 0].reshape(len(samples), -1)
        at = torch.gather(flat, 1, idx).reshape(vis.shape)
        assert torch.all(at[vis] == 1.0)
    same = [samples[0], samples[0]]  # equal sizes: exactly the default collate
    default = torch.utils.data.default_collate(same)
    padded = pad_collate(same)
    assert torch.equal(default[0], padded[0])
    assert all(torch.equal(a, b) for a, b in zip(default[3], padded[3], strict=True))


def test_test_geometry_mirror_probability(mini) -> None:
    """data.flip sets the mirror probability of the unaugmented mode: 0 never mirrors."""
    mini.transform = PoseTrainTransform(COCO17.flip_index, 128, (32, 64), params=None, mirror=0.0)
    first = [mini[0][0] for _ in range(4)]
    mini.transform = PoseTrainTransform(COCO17.flip_index, 128, (32, 64), params=None, mirror=1.0)
    mirrored = mini[0][0]
    mini.transform = None
    assert all(torch.equal(first[0], x) for x in first[1:])
    assert torch.equal(torch.flip(first[0], [2]), mirrored)
