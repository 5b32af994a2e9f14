"""decode on planted people: positions, grouping, flip, refine, empty and bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from munkres import Munkres  # munkres==1.1.4 (dev extra): the official grouping's solver

from hrpose.decode import DecodeParams, Transform, decode, input_size_for, preprocess
from hrpose.decode.munkres import munkres
from synthetic import make_outputs, random_people


def _tf(image):
    return [Transform.for_image(image)]


def _planted(n: int, image=(640, 480), tag_step=3.0, visible=None, seed=0):
    xy, (w, h) = random_people(n, image, seed=seed)
    outs, flips = make_outputs(xy, np.arange(n) * tag_step, (w, h), visible=visible, seed=seed)
    _, center, scale = input_size_for(image)
    truth = Transform(center, scale, (w, h)).to_image(xy)
    return outs, flips, truth


def _match(people, truth):
    """For each planted person, the decoded person closest to it (mean joint distance)."""
    d = np.linalg.norm(people.keypoints[:, None, :, :2] - truth[None], axis=3).mean(2)
    return d.argmin(0), d.min(0)


@pytest.mark.parametrize("flip", [False, True])
def test_planted_people_are_found(flip: bool) -> None:
    outs, flips, truth = _planted(4)
    people = decode([outs], _tf((640, 480)), flip_outputs=[flips] if flip else None)
    assert len(people) == 4 and people.keypoints.shape == (4, 17, 3)
    assert people.tags.shape == (4, 17, 2 if flip else 1)
    idx, err = _match(people, truth)
    assert sorted(idx) == [0, 1, 2, 3]
    assert err.max() < 1.5  # image pixels: 640 px image at 512 input
    assert np.all(people.scores > 0.5) and np.all(people.keypoints[:, :, 2] > 0.5)


def test_close_tags_still_group() -> None:
    outs, flips, truth = _planted(5, image=(480, 640), tag_step=0.6, seed=12)
    people = decode([outs], _tf((480, 640)), flip_outputs=[flips])
    idx, err = _match(people, truth)
    assert len(set(idx)) == 5 and err.max() < 2.0


def test_refine_fills_a_weak_joint() -> None:
    visible = np.ones((2, 17))
    visible[0, 9] = 0.0  # left wrist of person 0 has no peak above the threshold ...
    outs, flips, truth = _planted(2, visible=visible, seed=3)
    low = outs[0].clone()
    low[0, 9] += 0.05 * (low[0, 9] == 0)  # ... just a faint plateau, below detection_threshold
    without = decode([[low, outs[1]]], _tf((640, 480)), refine=False)
    with_refine = decode([[low, outs[1]]], _tf((640, 480)))
    p = _match(without, truth)[0][0]
    assert without.keypoints[p, 9, 2] == 0
    assert with_refine.keypoints[p, 9, 2] > 0  # refine placed it where the person's tag fits


def test_empty_and_bad_inputs() -> None:
    zeros = [torch.zeros(1, 34, 128, 160), torch.zeros(1, 17, 256, 320)]
    people = decode([zeros], _tf((640, 480)), flip_outputs=[zeros])
    assert len(people) == 0 and people.keypoints.shape == (0, 17, 3)
    with pytest.raises(ValueError, match="channels"):
        decode([[torch.zeros(1, 20, 16, 16), torch.zeros(1, 17, 32, 32)]], _tf((64, 64)))
    with pytest.raises(ValueError, match="scale 1.0|1.0"):
        DecodeParams(scales=(2.0, 0.5))
    with pytest.raises(TypeError, match="unknown decode parameter"):
        decode([zeros], _tf((640, 480)), refin=False)


def test_more_than_max_people_candidates() -> None:
    outs, flips, _ = _planted(34, seed=5)
    people = decode([outs], _tf((640, 480)), flip_outputs=[flips])
    assert len(people) >= 30 and np.isfinite(people.keypoints).all()


def test_preprocess_geometry() -> None:
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    x, tf = preprocess(image, 512)
    assert x.shape == (3, 512, 704) and tf.size == (704, 512)  # long side up to a multiple of 64
    assert preprocess(image[:100, :50], 512)[0].shape == (3, 1024, 512)
    # an input pixel maps back into the image consistently with the forward warp
    from hrpose.decode import affine_transform

    fwd = affine_transform(tf.center, tf.scale, tf.size)
    p = np.array([[123.0, 77.0]])
    there = p @ fwd[:, :2].T + fwd[:, 2]
    assert np.allclose(tf.to_image(there), p, atol=1e-3)
    # and the warp puts the image's content there: a bright square around p lands at `there`
    square = np.zeros_like(image)
    square[70:85, 116:131] = 255
    warped = preprocess(square, 512)[0][0]
    tx, ty = np.round(there[0]).astype(int)
    assert float(warped[ty, tx]) == float(warped.max()) > float(warped.min())
    assert float(warped[ty, tx + 20]) == float(warped.min())
    with pytest.raises(ValueError, match="RGB"):
        preprocess(image[:, :, 0])


def test_munkres_is_optimal() -> None:
    from itertools import permutations

    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 6))
        cost = rng.integers(0, 4, (n, n)).astype(float)
        pairs = munkres(cost)
        best = min(sum(cost[i, p[i]] for i in range(n)) for p in permutations(range(n)))
        assert sum(cost[r, c] for r, c in pairs) == best and [r for r, _ in pairs] == list(range(n))


def test_munkres_ties_like_classic_munkres() -> None:
    rng = np.random.default_rng(1)
    for _ in range(300):
        r, c = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        cost = rng.integers(0, 3, (r, c)).astype(float)
        expected = [tuple(map(int, p)) for p in Munkres().compute(cost.tolist())]
        assert munkres(cost) == expected


def test_point_bilinear_is_bit_exact() -> None:
    """Tags and heatmaps evaluated at pixels equal F.interpolate's full maps bit for bit."""
    import torch.nn.functional as F

    from hrpose.decode.aggregate import HeatSource, TagSource, bilinear_at

    g = torch.Generator().manual_seed(0)
    for (h, w), (oh, ow) in [((32, 44), (64, 88)), ((48, 64), (96, 128)), ((37, 53), (96, 160))]:
        src = torch.randn(2, h, w, generator=g)
        ref = F.interpolate(src[None], size=(oh, ow), mode="bilinear", align_corners=False)[0]
        c, y, x = (torch.randint(0, n, (3000,), generator=g) for n in (2, oh, ow))
        got = bilinear_at(lambda yy, xx, s=src, c=c: s[c, yy, xx], y, x, (h, w), (oh, ow))
        assert torch.equal(got, ref[c, y, x])
    low = torch.randn(17, 32, 44, generator=g)
    tags = TagSource((low, low.flip(0)), (False, True), (64, 88), (128, 176))
    mid = F.interpolate(low[None], size=(64, 88), mode="bilinear", align_corners=False)
    full = [
        F.interpolate(m, size=(128, 176), mode="bilinear", align_corners=False)[0]
        for m in (mid, torch.flip(mid, [3])[:, list(range(16, -1, -1))])
    ]
    j, y, x = (torch.randint(0, n, (3000,), generator=g) for n in (17, 128, 176))
    got = tags.at(j, y, x)
    assert torch.equal(got[:, 0], full[0][j, y, x]) and torch.equal(got[:, 1], full[1][j, y, x])
    assert torch.equal(tags.planes(5)[1], full[1][5])
    heat = HeatSource((low.abs(),), (128, 176))
    assert heat.exact_points
    assert torch.equal(heat.at(j, y, x), heat.full()[j, y, x])


def test_all_peak_paths_give_the_same_people(monkeypatch) -> None:
    """Tiled projection (default; the device code), full maps with OpenCV NMS and full maps with
    torch pooling return identical people on float32 outputs, and the default never builds a
    full-resolution heatmap or tag plane when refine finds candidates."""
    from hrpose.decode.aggregate import HeatSource, TagSource

    visible = np.ones((6, 17))
    visible[np.random.default_rng(4).random((6, 17)) < 0.15] = 0
    xy, (w, h) = random_people(6, (320, 240), input_size=256, seed=4)
    outs, flips = make_outputs(xy, np.arange(6) * 2.0, (w, h), visible=visible, seed=4)
    outs, flips = [t.float() for t in outs], [t.float() for t in flips]
    tf = [Transform.for_image((320, 240), 256)]
    full = decode([outs], tf, flip_outputs=[flips], tiled=False, use_cv2=True)
    pooled = decode([outs], tf, flip_outputs=[flips], tiled=False, use_cv2=False)
    visible[:] = 1
    xy2, wh2 = random_people(2, (640, 480), seed=1)  # sparse at full size: tiles pay off
    outs2, flips2 = make_outputs(xy2, np.arange(2) * 3.0, wh2, seed=1)
    outs2, flips2 = [t.float() for t in outs2], [t.float() for t in flips2]
    tf2 = [Transform.for_image((640, 480))]
    clean_full = decode([outs2], tf2, flip_outputs=[flips2], tiled=False)
    tiled = decode([outs], tf, flip_outputs=[flips])

    def forbidden(*_a, **_k):
        raise AssertionError("full-resolution maps built")

    monkeypatch.setattr(HeatSource, "full", forbidden)
    monkeypatch.setattr(TagSource, "planes", forbidden)
    clean_tiled = decode([outs2], tf2, flip_outputs=[flips2])
    assert len(full) >= 6 and len(clean_full) == 2
    for a, b in [(full, pooled), (full, tiled), (clean_full, clean_tiled)]:
        assert len(a) == len(b)
        assert np.array_equal(a.keypoints, b.keypoints) and np.array_equal(a.tags, b.tags)
        assert np.array_equal(a.scores, b.scores)


def test_pose_output_accessors_and_settings() -> None:
    from hrpose.structures import PoseOutput

    low, high = torch.randn(2, 34, 8, 8), torch.randn(2, 17, 16, 16)
    out = PoseOutput(low, high)
    assert out.num_joints == 17 and torch.equal(out.heatmaps, low[:, :17])
    assert torch.equal(out.tags, low[:, 17:]) and out.high_heatmaps is high
    with pytest.raises(ValueError, match="channels"):
        PoseOutput(low[:, :20], high).check()
    from hrpose.losses import HigherHRNetLoss

    targets = [torch.rand(2, 17, 8, 8), torch.rand(2, 17, 16, 16)]
    masks = [torch.ones(2, 8, 8), torch.ones(2, 16, 16)]
    idx = torch.stack([torch.randint(0, 17 * 64, (2, 3, 17)), torch.ones(2, 3, 17).long()], -1)
    by_name = HigherHRNetLoss()(out, targets, masks, [idx, idx])[0]
    assert by_name == HigherHRNetLoss()([low, high], targets, masks, [idx, idx])[0]
    with pytest.raises(ValueError, match="detection_threshold"):
        DecodeParams(detection_threshold=-0.1)


def test_one_set_of_decode_settings(tmp_path) -> None:
    """Config, protocol record and the commands' flags all come from InferenceSettings (its
    names and defaults); the old names are clear errors."""
    import dataclasses

    from hrpose.cli.eval_pose import _parser
    from hrpose.cli.options import parse
    from hrpose.config.load import ConfigError, load_config
    from hrpose.config.schema import InferenceConfig, PoseTrainConfig
    from hrpose.evaluation.protocol import ProtocolRecord
    from hrpose.structures import InferenceSettings

    cfg = InferenceConfig(detection_threshold=0.3, flip=False)
    assert cfg.decode_params() == DecodeParams(detection_threshold=0.3, flip=False)
    assert isinstance(cfg, InferenceSettings)  # the config section is the settings' own class
    assert {f.name for f in dataclasses.fields(InferenceConfig)} - set(
        InferenceSettings.names()
    ) == {"ckpt_path"}
    with pytest.raises(ValueError, match="detection_threshold"):
        InferenceConfig(detection_threshold=-1.0)
    with pytest.raises(ConfigError, match="detection_threshold"):
        load_config(PoseTrainConfig, None, ["--inference.det_threshold=0.3"])
    rec = json.loads(ProtocolRecord("a", 1, cfg.settings()).to_json())
    assert rec["detection_threshold"] == 0.3 and rec["flip"] is False and rec["scales"] == [1.0]
    args, over = parse(_parser(), ["--detection-threshold", "0.2", "--no-refine"], ("inference",))
    assert args.inference_detection_threshold == 0.2 and args.inference_refine is False
    assert args.inference_max_people is None and over == []  # not given: the record decides
    for name in InferenceSettings.names():  # every setting has its flag
        assert hasattr(args, f"inference_{name}"), name
    with pytest.raises(SystemExit):
        parse(_parser(), ["--det-threshold", "0.2"], ("inference",))
