"""Drawing: only confident people and joints, colours per person, heatmaps aligned with the
image, tags of detected joints, panels; video round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrpose.decode import DecodeParams, decode, preprocess
from hrpose.skeleton import COCO17, CROWDPOSE14
from hrpose.structures import People
from hrpose.viz.draw import (
    draw_people,
    drawn_joints,
    drawn_parts,
    heatmap_affine,
    heatmap_grid,
    person_color,
    side_by_side,
    tag_plot,
    warp_heatmaps,
)
from hrpose.viz.video import VideoError, VideoWriter, read_video, video_info


def _people() -> People:
    kp = np.zeros((2, 17, 3), np.float32)
    kp[0, :, 0], kp[0, :, 1], kp[0, :, 2] = np.linspace(20, 60, 17), np.linspace(10, 90, 17), 0.9
    kp[1, :, 0], kp[1, :, 1], kp[1, :, 2] = np.linspace(120, 160, 17), np.linspace(10, 90, 17), 0.9
    kp[1, 5, 2] = 0.01  # below the drawing threshold
    tags = np.stack([np.full((17, 1), 0.0), np.full((17, 1), 2.0)]).astype(np.float32)
    return People(kp, np.array([0.9, 0.8], np.float32), tags)


def test_skeleton_colours_at_joints() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    out = draw_people(image, _people(), COCO17)
    assert image.sum() == 0  # input untouched
    p = _people().keypoints
    assert out[int(p[0, 0, 1]), int(p[0, 0, 0])].tolist() == list(person_color(0))
    assert out[int(p[1, 0, 1]), int(p[1, 0, 0])].tolist() == list(person_color(1))
    ids = draw_people(image, _people(), COCO17, ids=[7, 3])
    assert ids[int(p[0, 3, 1]), int(p[0, 3, 0])].tolist() == list(person_color(7))


def _star(score: float, joint_scores: np.ndarray) -> People:
    """One person whose 17 joints sit on a 400x400 canvas far apart (limb midpoints distinct)."""
    kp = np.zeros((1, 17, 3), np.float32)
    angle = np.linspace(0, 2 * np.pi, 17, endpoint=False)
    kp[0, :, 0], kp[0, :, 1] = 200 + 150 * np.cos(angle), 200 + 150 * np.sin(angle)
    kp[0, :, 2] = joint_scores
    return People(kp, np.array([score], np.float32), np.ones((1, 17, 1), np.float32))


def _lit(image: np.ndarray, xy: np.ndarray) -> bool:
    x, y = np.round(xy).astype(int)
    return bool(image[y - 1 : y + 2, x - 1 : x + 2].any())


def test_low_score_person_and_low_joints_are_not_drawn() -> None:
    canvas = np.zeros((400, 400, 3), np.uint8)
    scores = np.full(17, 0.9, np.float32)
    scores[5] = 0.1  # left shoulder: below the joint threshold
    sure = _star(0.8, scores)
    out = draw_people(canvas, sure, COCO17, joint_threshold=0.3, person_threshold=0.25)
    kp = sure.keypoints[0]
    assert _lit(out, kp[0, :2]) and not _lit(out, kp[5, :2])
    for a, b in COCO17.skeleton:  # a limb is drawn exactly when both its joints are
        mid = (kp[a, :2] + kp[b, :2]) / 2
        assert _lit(out, mid) == (a != 5 and b != 5), (a, b)
    unsure = _star(0.1, np.full(17, 0.9, np.float32))  # confident joints, low person score
    assert not draw_people(canvas, unsure, COCO17, person_threshold=0.25).any()
    assert draw_people(canvas, unsure, COCO17, person_threshold=0.05).any()
    assert drawn_joints(unsure, 0.25, 0.3).sum() == 0 and drawn_joints(sure, 0.25, 0.3).sum() == 16


def _standing() -> People:
    """One upright person with COCO proportions (joints x, y) on a 400x400 canvas."""
    xy = [(200, 40), (193, 33), (207, 33), (184, 38), (216, 38), (175, 80), (225, 80),
          (165, 125), (235, 125), (160, 165), (240, 165), (185, 170), (215, 170),
          (183, 240), (217, 240), (182, 310), (218, 310)]  # fmt: skip
    kp = np.concatenate([np.array(xy, np.float32), np.full((17, 1), 0.9, np.float32)], axis=1)
    return People(kp[None], np.array([0.9], np.float32), np.ones((1, 17, 1), np.float32))


def test_a_joint_grouped_from_another_person_is_not_drawn_with_its_long_limbs() -> None:
    canvas = np.zeros((400, 400, 3), np.uint8)
    person = _standing()
    joints, limbs = drawn_parts(person, COCO17)
    assert joints.all() and limbs.all()  # real proportions: every limb within 3x the median
    wrong = People(person.keypoints.copy(), person.scores, person.tags)
    wrong.keypoints[0, 9, :2] = (390, 380)  # left wrist grouped from someone far away
    joints, limbs = drawn_parts(wrong, COCO17)
    arm = [i for i, (a, b) in enumerate(COCO17.skeleton) if 9 in (a, b)]
    assert len(arm) == 1 and not limbs[0, arm[0]] and limbs[0].sum() == len(COCO17.skeleton) - 1
    assert not joints[0, 9] and joints[0].sum() == 16
    out = draw_people(canvas, wrong, COCO17)
    kp = wrong.keypoints[0]
    assert not _lit(out, kp[9, :2]) and not _lit(out, (kp[9, :2] + kp[7, :2]) / 2)
    assert _lit(out, kp[7, :2]) and _lit(out, (kp[7, :2] + kp[5, :2]) / 2)
    every = draw_people(canvas, wrong, COCO17, limb_ratio=np.inf)
    assert _lit(every, kp[9, :2]) and _lit(every, (kp[9, :2] + kp[7, :2]) / 2)
    assert drawn_joints(wrong, 0.25, 0.3).sum() == 16  # the counts say what is drawn


def _crowd(*people: tuple[float, float, float]) -> People:
    """:func:`_standing` people, each scaled by ``s`` about its hips and moved to (x, y)."""
    base = _standing().keypoints[0]
    hips = base[11:13, :2].mean(0)
    kps = []
    for s, x, y in people:
        kp = base.copy()
        kp[:, :2] = (kp[:, :2] - hips) * s + (x, y)
        kps.append(kp)
    n = len(kps)
    return People(np.stack(kps), np.full(n, 0.9, np.float32), np.ones((n, 17, 1), np.float32))


def _spread(center: tuple[float, float], radius: float) -> np.ndarray:
    """(17, 3) joints of a wrongly grouped person: spread around a circle, so that every limb
    spans the group (joints j and j + 1 are 148 degrees apart) and no limb is short."""
    angle = 2 * np.pi * 7 * np.arange(17) / 17
    xy = np.stack([np.cos(angle), np.sin(angle)], 1) * radius + center
    return np.concatenate([xy, np.full((17, 1), 0.9)], 1).astype(np.float32)


def test_a_person_grouped_from_several_people_is_cut_by_the_image_reference() -> None:
    """A wrongly grouped person with only long limbs passes a limit set by its own median; by
    the image's typical limb it is cut, while people of different sizes (a near one twice as
    big) keep every limb."""
    normal = _crowd((1.0, 300, 500), (1.0, 700, 500), (2.0, 1200, 450), (0.8, 1700, 520))
    kp = np.concatenate([normal.keypoints, _spread((1000, 500), 350)[None]])
    people = People(kp, np.full(5, 0.9, np.float32), np.ones((5, 17, 1), np.float32))
    joints, limbs = drawn_parts(people, COCO17)
    assert joints[:4].all() and limbs[:4].all()
    assert not limbs[4].any() and not joints[4].any()
    old_rule = drawn_parts(people, COCO17, reference_cap=np.inf)[1]  # the person's own median
    assert old_rule.all()
    alone = People(kp[4:], people.scores[4:], people.tags[4:])
    assert drawn_parts(alone, COCO17)[1].all()  # with no one to compare: its own median
    out = draw_people(np.zeros((1000, 2000, 3), np.uint8), people, COCO17)
    a, b = COCO17.skeleton[0]
    assert not _lit(out, (kp[4, a, :2] + kp[4, b, :2]) / 2)
    assert _lit(out, kp[2, 15, :2]) and _lit(out, (kp[2, 13, :2] + kp[2, 15, :2]) / 2)


def _crowdpose_standing() -> People:
    """The upright person of :func:`_standing` as CrowdPose-14 joints (head and neck added)."""
    coco = _standing().keypoints[0]
    body = coco[[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]]
    head_neck = np.array([[200, 15, 0.9], [200, 70, 0.9]], np.float32)
    kp = np.concatenate([body, head_neck])[None]
    return People(kp, np.array([0.9], np.float32), np.ones((1, 14, 1), np.float32))


def test_crowdpose_people_are_drawn_with_their_own_skeleton_by_default() -> None:
    canvas = np.zeros((400, 400, 3), np.uint8)
    people = _crowdpose_standing()
    out = draw_people(canvas, people)  # no spec: the built-in set with 14 joints
    assert np.array_equal(out, draw_people(canvas, people, CROWDPOSE14))
    kp = people.keypoints[0]
    for a, b in CROWDPOSE14.skeleton:  # head-neck, neck-shoulders, ...: all drawn
        assert _lit(out, (kp[a, :2] + kp[b, :2]) / 2), (a, b)
    joints, limbs = drawn_parts(people)
    assert joints.all() and limbs.shape == (1, len(CROWDPOSE14.skeleton)) and limbs.all()
    assert drawn_joints(people).all()
    five = People(kp[None, :5], people.scores, people.tags[:, :5])
    for draw in (lambda: draw_people(canvas, five), lambda: drawn_parts(five),
                 lambda: drawn_joints(five)):  # fmt: skip
        with pytest.raises(ValueError, match="no built-in keypoint set has 5 joints: pass spec="):
            draw()
    with pytest.raises(ValueError, match="the people have 14 joints but spec has 17"):
        draw_people(canvas, people, COCO17)


def test_colours_follow_the_drawn_people_and_track_ids() -> None:
    people = _people()
    low = People(people.keypoints[[1, 0]], np.array([0.05, 0.9], np.float32), people.tags[[1, 0]])
    out = draw_people(np.zeros((100, 200, 3), np.uint8), low, COCO17)
    first = low.keypoints[1, 0]  # the only drawn person takes the first colour
    assert out[int(first[1]), int(first[0])].tolist() == list(person_color(0))
    with pytest.raises(ValueError, match="ids has 1 entries for 2 people"):
        draw_people(np.zeros((100, 200, 3), np.uint8), people, COCO17, ids=[1])


def test_heatmap_peak_lands_on_the_decoded_joint() -> None:
    image = np.zeros((480, 640, 3), np.uint8)  # at 512 the input is 704x512: 3% wider
    _, transform = preprocess(image, 512)
    w, h = transform.size
    high = torch.zeros(1, 17, h // 2, w // 2)
    high[0, 0, 60, 340] = 1.0  # near the right edge, where stretching errs most
    low = torch.zeros(1, 34, h // 4, w // 4)
    params = DecodeParams(flip=False, refine=False, detection_threshold=0.05)
    people = decode([[low, high]], [transform], params=params)
    assert len(people) == 1
    x, y = people.keypoints[0, 0, :2]
    affine = heatmap_affine(transform, (w // 2, h // 2))
    maps = warp_heatmaps(high[0].numpy(), (640, 480), affine)
    yy, xx = np.unravel_index(np.argmax(maps[0]), maps[0].shape)
    assert abs(xx - x) <= 1 and abs(yy - y) <= 1
    yy, xx = np.unravel_index(np.argmax(warp_heatmaps(high[0].numpy(), (640, 480))[0]), (480, 640))
    assert abs(xx - x) > 5  # stretching the padded input (3% wider) misses it
    grid = heatmap_grid(image, high[0].numpy(), COCO17.names, tile=320, affine=affine)
    red = grid[:240, 320:640, 0].astype(np.float64)  # the nose tile over a black image
    red[:20] = 0  # its label
    ys, xs = np.nonzero(red)
    cx, cy = (xs * red[ys, xs]).sum() / red.sum(), (ys * red[ys, xs]).sum() / red.sum()
    assert abs(cx - ((x + 0.5) / 2 - 0.5)) < 1.5 and abs(cy - ((y + 0.5) / 2 - 0.5)) < 1.5


def test_tag_plot_shows_detected_joints_of_drawn_people_only() -> None:
    base = _people()
    kp, tags = base.keypoints.copy(), base.tags.copy()
    kp[0, 7, 2], tags[0, 7] = 0.8, 0.0  # filled in by refinement: a score but no tag
    refined = People(kp, base.scores, tags)
    kp_missing = kp.copy()
    kp_missing[0, 7, 2] = 0.0
    missing = People(kp_missing, base.scores, tags)
    assert np.array_equal(
        tag_plot(refined, COCO17.names, (300, 200)), tag_plot(missing, COCO17.names, (300, 200))
    )
    tags_real = tags.copy()
    tags_real[0, 7] = 1.0
    assert not np.array_equal(
        tag_plot(People(kp, base.scores, tags_real), COCO17.names, (300, 200)),
        tag_plot(refined, COCO17.names, (300, 200)),
    )
    low = People(kp, np.array([0.9, 0.01], np.float32), tags)  # the second is not drawn
    one = People(kp[:1], base.scores[:1], tags[:1])
    assert np.array_equal(
        tag_plot(low, COCO17.names, (300, 200)), tag_plot(one, COCO17.names, (300, 200))
    )


def test_side_by_side_panel() -> None:
    left, right = np.zeros((100, 80, 3), np.uint8), np.full((50, 40, 3), 200, np.uint8)
    panel = side_by_side([left, right], ["prediction", "ground truth"], gap=4)
    assert panel.shape == (100, 80 + 4 + 80, 3)
    assert panel[90, 120].tolist() == [200, 200, 200]  # the right image, scaled to the height
    with pytest.raises(ValueError, match="one label per image"):
        side_by_side([left], [])


def test_heatmap_grid_and_tag_plot() -> None:
    image = np.full((100, 200, 3), 128, np.uint8)
    heat = np.zeros((17, 25, 50), np.float32)
    heat[0, 10, 10] = 1
    grid = heatmap_grid(image, heat, COCO17.names, cols=6, tile=60)
    assert grid.shape == (3 * 30, 6 * 60, 3)
    plot = tag_plot(_people(), COCO17.names)
    assert plot.ndim == 3 and plot.shape[2] == 3 and plot.std() > 0


def test_video_round_trip(tmp_path) -> None:
    frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(5)]
    with VideoWriter(tmp_path / "v.mp4", fps=5) as w:
        for f in frames:
            w.write(f)
    back = list(read_video(tmp_path / "v.mp4"))
    assert len(back) == 5 and back[0].shape == (48, 64, 3)
    assert abs(int(back[3].mean()) - 120) < 6
    assert video_info(tmp_path / "v.mp4")[0] == pytest.approx(5.0)
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(VideoError):
        list(read_video(tmp_path / "bad.mp4"))
