"""COCO keypoints dataset on the real coco-mini data, and the training sample encoding."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from hrpose.data.coco import CocoKeypoints, DatasetError
from hrpose.data.loaders import build_loader
from hrpose.data.pipeline import PoseTrainTransform, pad_collate
from hrpose.normalization import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MEAN_RGB_U8,
    normalize_batch,
    normalize_image,
    normalize_torch,
)
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
    assert image.shape == (2, 256, 256, 3) and image.dtype == torch.uint8
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
    widths = {s[0].shape[1] for s in samples}
    assert len(widths) > 1  # 640x392 gets a wider canvas than the others at input 128
    image, hms, masks, joints = pad_collate(samples)
    h, w = max(s[0].shape[0] for s in samples), max(widths)
    assert image.shape == (len(samples), h, w, 3)
    for b, s in enumerate(samples):  # each image top-left, the rest the mean colour
        sh, sw = s[0].shape[:2]
        assert torch.equal(image[b, :sh, :sw], s[0])
        assert torch.all(image[b, :, sw:] == torch.tensor(MEAN_RGB_U8, dtype=torch.uint8))
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
    assert torch.equal(torch.flip(first[0], [1]), mirrored)


def test_normalize_batch_matches_per_image_normalisation() -> None:
    """uint8 batches normalised on the device equal the official ToTensor+Normalize."""
    rng = np.random.default_rng(0)
    batch = torch.from_numpy(rng.integers(0, 256, (2, 24, 40, 3), dtype=np.uint8))
    out = normalize_batch(batch)
    assert out.shape == (2, 3, 24, 40) and out.is_contiguous()
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    ref = (batch.numpy() / 255.0 - mean) / std
    np.testing.assert_allclose(out.numpy(), ref.transpose(0, 3, 1, 2), atol=1e-6)
    assert torch.equal(out[0], normalize_image(batch[0].numpy()))
    assert torch.equal(normalize_torch(batch), out)  # the accelerator path, same operations
    cl = normalize_batch(batch, channels_last=True)
    assert cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(cl, out)
    with pytest.raises(ValueError, match="uint8"):
        normalize_batch(out)


def test_ignore_mask_merges_crowds_and_unlabelled_people() -> None:
    """Merged-RLE mask equals the official per-annotation sum (m += decode(rle); m < 0.5)."""
    from pycocotools import mask as mask_utils

    from hrpose.data.coco import ignore_mask

    h, w = 40, 60
    crowd = np.zeros((h, w), np.uint8)
    crowd[5:20, 30:55] = 1
    flat = crowd.ravel(order="F")  # COCO crowds: uncompressed RLE, column-major, zeros first
    edges = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    crowd_rle = {"counts": counts, "size": [h, w]}
    anns = [
        {"iscrowd": 1, "num_keypoints": 0, "segmentation": crowd_rle},
        {
            "iscrowd": 0,
            "num_keypoints": 0,
            "segmentation": [[2, 2, 20, 2, 20, 30, 2, 30], [10, 10, 25, 10, 25, 35]],
        },
        {"iscrowd": 0, "num_keypoints": 5, "segmentation": [[40, 25, 58, 25, 58, 38]]},
    ]
    ref = np.zeros((h, w))
    for a in anns[:2]:
        rles = mask_utils.frPyObjects(a["segmentation"], h, w)
        for rle in rles if isinstance(rles, list) else [rles]:
            ref += mask_utils.decode(rle)
    got = ignore_mask(anns, h, w)
    assert got.dtype == np.bool_ and np.array_equal(got, ref < 0.5) and (~got).sum() > 300
    assert ignore_mask(anns[2:], h, w).all()  # labelled people are never ignored
