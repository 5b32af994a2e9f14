"""Pure drawing: new images with skeletons, heatmap grids, tag-embedding plots and panels.

Only what the model is sure of is drawn: people whose score passes a person threshold, and of
those the joints whose score passes a joint threshold; a limb joins two drawn joints, unless it
is longer than LIMB_RATIO times the person's reference limb (its median limb, capped by the
image's typical one): a joint grouped into the wrong person. The decoder keeps every person
(COCO results need them); drawing all of them shows low-score fragments as whole skeletons
with limbs across the frame.

Shapes: P people, K joints, T tag dimension, h x w heatmap.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from hrpose.skeleton import KeypointSpec, builtin_spec_for
from hrpose.structures import People

# Defaults measured with benchmarks/bench_draw_thresholds.py on the demo model's coco-mini
# predictions (36 decoded for 12 annotated): a person score of 0.25 draws exactly the 12
# annotated people (0.1: 17, 0.3 loses one), and nothing on the image without a person; a joint
# score of 0.3 (mmpose's default) hides 14 of those people's 50 joints that miss their
# annotation (OKS joint similarity < 0.5 or unlabelled) and 9 of the 154 that hit it.
# The person score is the official one: the mean of all K joint scores before refinement.
PERSON_THRESHOLD = 0.25
JOINT_THRESHOLD = 0.3
# A limb is drawn only up to LIMB_RATIO times its person's reference limb, and a joint whose
# every limb is longer is hidden: the decoder groups by tag alone, so a weak model joins joints
# of different people into one, drawn as lines across the frame. The reference is the person's
# median drawn limb, capped at REFERENCE_CAP times the image's typical one (the median over the
# drawn people of their median limbs): a person made of joints of several people has only long
# limbs, so its own median alone would pass them; in the image it is one vote among the people
# (with no other person drawn, the reference is its own median, as before).
# Measured with the same benchmark at the thresholds above: the 12 annotated people's own limbs
# reach 2.64x their median and 3.42x the image's typical limb (a batter in front of small
# fielders); with the cap all 138 limbs between two correctly placed joints stay, as without
# it, and of limbs joining two annotated people's joints in one simulated person 87% go
# instead of 16% (benchmarks/README.md, "Drawing limits"). A drawing choice only:
# predictions.json keeps every joint.
LIMB_RATIO = 3.0
REFERENCE_CAP = 5 / 3

# Distinct colours for people (RGB), cycled.
PALETTE = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
)  # fmt: skip


def person_color(index: int) -> tuple[int, int, int]:
    """Colour of person ``index`` (a track id or the rank among the drawn people)."""
    return PALETTE[index % len(PALETTE)]


def resolve_spec(num_joints: int, spec: KeypointSpec | None = None) -> KeypointSpec:
    """``spec``, else the built-in set with ``num_joints`` joints (17: COCO, 14: CrowdPose), so
    people are drawn with their own skeleton; a clear error when neither fits."""
    if spec is None:
        spec = builtin_spec_for(num_joints)
        if spec is None:
            raise ValueError(
                f"no built-in keypoint set has {num_joints} joints: pass spec= (the KeypointSpec "
                "of the model or the annotation file) to draw these people"
            )
    elif spec.num_joints != num_joints:
        raise ValueError(f"the people have {num_joints} joints but spec has {spec.num_joints}")
    return spec


def _confident(people: People, person_threshold: float, joint_threshold: float) -> np.ndarray:
    """(P, K) bool: joints at least ``joint_threshold`` of people at least ``person_threshold``."""
    keep = np.asarray(people.scores)[:, None] >= person_threshold
    return (np.asarray(people.keypoints)[:, :, 2] >= joint_threshold) & keep


def drawn_parts(
    people: People,
    spec: KeypointSpec | None = None,
    person_threshold: float = PERSON_THRESHOLD,
    joint_threshold: float = JOINT_THRESHOLD,
    limb_ratio: float = LIMB_RATIO,
    reference_cap: float = REFERENCE_CAP,
) -> tuple[np.ndarray, np.ndarray]:
    """(P, K) joints and (P, L) limbs of ``spec.skeleton`` to draw.

    Joints: score >= ``joint_threshold`` of people whose score is >= ``person_threshold``. Limbs:
    both joints drawn and no longer than ``limb_ratio`` times the person's reference limb: its
    median such limb, at most ``reference_cap`` times the median of those medians over the
    people drawn (among several people, a wrongly grouped person's long limbs do not set its
    limit; a person drawn alone has its own median); a joint with limbs, all of them too long,
    is not drawn (``limb_ratio=inf`` keeps them all).
    ``spec`` defaults to the built-in set with K joints (:func:`resolve_spec`).
    """
    kp = np.asarray(people.keypoints, np.float64)
    spec = resolve_spec(kp.shape[1], spec)
    limbs = np.asarray(spec.skeleton, dtype=int).reshape(-1, 2)
    joints = _confident(people, person_threshold, joint_threshold)
    pairs = joints[:, limbs[:, 0]] & joints[:, limbs[:, 1]]
    length = np.linalg.norm(kp[:, limbs[:, 0], :2] - kp[:, limbs[:, 1], :2], axis=2)
    median = np.zeros((len(kp), 1))
    rows = pairs.any(axis=1)
    median[rows, 0] = np.nanmedian(np.where(pairs, length, np.nan)[rows], axis=1)
    if rows.any():  # the image's typical limb: one vote per drawn person
        median = np.minimum(median, reference_cap * np.median(median[rows, 0]))
    drawn = pairs & (length <= limb_ratio * median) if np.isfinite(limb_ratio) else pairs
    has, kept = np.zeros_like(joints), np.zeros_like(joints)
    for column in (0, 1):  # joints with candidate limbs / with a drawn limb
        np.logical_or.at(has, (slice(None), limbs[:, column]), pairs)
        np.logical_or.at(kept, (slice(None), limbs[:, column]), drawn)
    return joints & (kept | ~has), drawn


def drawn_joints(
    people: People,
    person_threshold: float = PERSON_THRESHOLD,
    joint_threshold: float = JOINT_THRESHOLD,
    *,
    spec: KeypointSpec | None = None,
    limb_ratio: float = LIMB_RATIO,
    reference_cap: float = REFERENCE_CAP,
) -> np.ndarray:
    """(P, K) bool: the joints :func:`draw_people` draws (see :func:`drawn_parts`; ``spec``
    defaults to the built-in set with K joints). A person is drawn when any of its joints is."""
    parts = drawn_parts(people, spec, person_threshold, joint_threshold, limb_ratio, reference_cap)
    return parts[0]


def _colors(shown: np.ndarray, ids: Sequence[int] | None) -> list[tuple[int, int, int]]:
    """One colour per person: its id, else its rank among the drawn people (P entries)."""
    if ids is not None:
        return [person_color(int(i)) for i in ids]
    rank = np.cumsum(shown.any(axis=1)) - 1
    return [person_color(int(r)) for r in rank]


def draw_people(
    image: np.ndarray,
    people: People,
    spec: KeypointSpec | None = None,
    ids: Sequence[int] | None = None,
    joint_threshold: float = JOINT_THRESHOLD,
    *,
    person_threshold: float = PERSON_THRESHOLD,
    limb_ratio: float = LIMB_RATIO,
    reference_cap: float = REFERENCE_CAP,
) -> np.ndarray:
    """A copy of the RGB image with the confident people's skeletons, one colour each.

    People below ``person_threshold`` and joints below ``joint_threshold`` are not drawn; a limb
    only joins two drawn joints, up to ``limb_ratio`` times the person's reference limb (see
    :func:`drawn_parts`). ``ids`` (e.g. track ids) pick the colours and label the people.
    ``spec`` defaults to the built-in set of the people's joint count (:func:`resolve_spec`).
    """
    out = np.ascontiguousarray(image.copy())
    spec = resolve_spec(np.shape(people.keypoints)[1], spec)
    if len(people) == 0:
        return out
    if ids is not None and len(ids) != len(people):
        raise ValueError(f"ids has {len(ids)} entries for {len(people)} people; give one each")
    h, w = out.shape[:2]
    thick = max(1, round(max(h, w) / 400))
    radius = thick + 1
    shown, limbs_shown = drawn_parts(
        people, spec, person_threshold, joint_threshold, limb_ratio, reference_cap
    )
    colors = _colors(shown, ids)
    pts = np.round(people.keypoints[:, :, :2]).astype(int)
    limbs = np.asarray(spec.skeleton, dtype=int).reshape(-1, 2)
    for i in np.flatnonzero(shown.any(axis=1)):
        ok, p, color = shown[i], pts[i], colors[i]
        for a, b in limbs[limbs_shown[i]]:
            # a dark edge keeps the limb visible on light and busy backgrounds
            cv2.line(out, tuple(p[a]), tuple(p[b]), (0, 0, 0), thick + 2, cv2.LINE_AA)
            cv2.line(out, tuple(p[a]), tuple(p[b]), color, thick, cv2.LINE_AA)
        for j in np.flatnonzero(ok):
            cv2.circle(out, tuple(p[j]), radius + 1, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(out, tuple(p[j]), radius, color, -1, cv2.LINE_AA)
        if ids is not None:
            top = p[ok][np.argmin(p[ok][:, 1])]
            org = (int(top[0]), max(10, int(top[1]) - 6))
            font = cv2.FONT_HERSHEY_SIMPLEX
            text, size = str(int(ids[i])), 0.4 * thick
            cv2.putText(out, text, org, font, size, (0, 0, 0), thick + 2, cv2.LINE_AA)
            cv2.putText(out, text, org, font, size, color, thick, cv2.LINE_AA)
    return out


def _label(tile: np.ndarray, text: str, scale: float = 0.35) -> None:
    """White text on a dark strip in the top-left corner (in place)."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, scale, 1)
    cv2.rectangle(tile, (0, 0), (tw + 6, th + base + 4), (0, 0, 0), -1)
    cv2.putText(tile, text, (3, th + 2), font, scale, (255, 255, 255), 1, cv2.LINE_AA)


def heatmap_affine(transform: object, heat_size: tuple[int, int]) -> np.ndarray:
    """(2, 3) map from heatmap pixels to image pixels for a heatmap of ``heat_size`` (w, h).

    ``transform`` is the input's :class:`hrpose.decode.Transform` (anything with its
    ``to_image(points, size)``). A heatmap pixel j stands for j + 0.5 in map units, the
    decoder's convention (it adds 0.5 to each peak), so a peak lands where its joint is drawn.
    """
    src = np.array([[0.5, 0.5], [1.5, 0.5], [0.5, 1.5]])
    dst = np.asarray(transform.to_image(src, tuple(heat_size)), np.float64)[:, :2]  # type: ignore[attr-defined]
    return np.column_stack([dst[1] - dst[0], dst[2] - dst[0], dst[0]])


def warp_heatmaps(
    heatmaps: np.ndarray, size: tuple[int, int], affine: np.ndarray | None = None
) -> np.ndarray:
    """Heatmaps (K, h, w) -> (K, H, W) on an image of ``size`` (W, H), clipped to [0, 1].

    With ``affine`` (heatmap -> image pixels, :func:`heatmap_affine`) the padded network input is
    undone; without it the maps are stretched over the image.
    """
    maps = np.clip(np.asarray(heatmaps, np.float32), 0, 1)
    if affine is None:
        return np.stack([cv2.resize(m, size, interpolation=cv2.INTER_LINEAR) for m in maps])
    mat = np.asarray(affine, np.float64)
    return np.stack([cv2.warpAffine(m, mat, size, flags=cv2.INTER_LINEAR) for m in maps])


def heatmap_grid(
    image: np.ndarray,
    heatmaps: np.ndarray,
    names: Sequence[str],
    cols: int = 6,
    tile: int = 160,
    *,
    affine: np.ndarray | None = None,
    transform: object | None = None,
) -> np.ndarray:
    """One tile per joint: the heatmap (K, h, w) as a colour overlay on the resized image.

    ``affine``: the (2, 3) map from heatmap pixels to image pixels (:func:`heatmap_affine`), or
    ``transform``: the input's Transform it is built from; either makes each peak land on its
    image pixel. Without both the heatmap is stretched over the image, which is only right when
    the network input needed no padding.
    """
    k = heatmaps.shape[0]
    if affine is None and transform is not None:
        affine = heatmap_affine(transform, (heatmaps.shape[2], heatmaps.shape[1]))
    rows = int(np.ceil((k + 1) / cols))
    th = max(1, round(tile * image.shape[0] / image.shape[1]))
    base = cv2.resize(image, (tile, th), interpolation=cv2.INTER_AREA)
    if affine is not None:  # then image pixel -> tile pixel, pixel centres as cv2.resize
        sx, sy = tile / image.shape[1], th / image.shape[0]
        to_tile = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
        affine = (to_tile @ np.vstack([np.asarray(affine, np.float64), [0, 0, 1]]))[:2]
    warped = warp_heatmaps(heatmaps, (tile, th), affine)
    grid = np.zeros((rows * th, cols * tile, 3), np.uint8)
    first = base.copy()
    _label(first, "image")
    tiles = [first]
    for j, hm in enumerate(warped):
        color = cv2.applyColorMap((hm * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
        alpha = np.clip(hm * 2, 0.15, 0.85)[:, :, None]  # the image shows where the map is low
        t = (base * (1 - alpha) + color * alpha).astype(np.uint8)
        _label(t, str(names[j])[:14])
        tiles.append(t)
    for n, t in enumerate(tiles):
        r, c = divmod(n, cols)
        grid[r * th : (r + 1) * th, c * tile : (c + 1) * tile] = t
    return grid


def tag_plot(
    people: People,
    names: Sequence[str],
    size: tuple[int, int] = (900, 420),
    *,
    person_threshold: float = PERSON_THRESHOLD,
    joint_threshold: float = JOINT_THRESHOLD,
    ids: Sequence[int] | None = None,
) -> np.ndarray:
    """RGB plot of each drawn person's tag value per detected joint, coloured as draw_people.

    Well-grouped people are horizontal bands apart from each other. Joints the decoder filled in
    by refinement carry no tag (stored as 0 or NaN) and are left out, as are undrawn people.
    """
    # A Figure on its own Agg canvas, no pyplot: the caller's backend (a notebook's) is left alone
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # every confident joint, also those draw_people leaves out for a too-long limb: their tags
    # show why the decoder grouped them into that person
    shown = _confident(people, person_threshold, joint_threshold) if len(people) else None
    fig = Figure(figsize=(size[0] / 100, size[1] / 100), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.subplots()
    k = len(names)
    drawn = 0
    if shown is not None:
        tags = np.asarray(people.tags, np.float64)
        measured = np.isfinite(tags).all(axis=2) & (tags != 0).any(axis=2)
        colors = _colors(shown, ids)
        rank = np.cumsum(shown.any(axis=1)) - 1  # the numbers of the ground-truth panels
        for i in np.flatnonzero((shown & measured).any(axis=1)):
            found = shown[i] & measured[i]
            label = f"id {int(ids[i])}" if ids is not None else f"person {rank[i]}"
            c = np.array(colors[i]) / 255
            ax.plot(np.arange(k)[found], tags[i, found, 0], "o-", color=c, ms=4, lw=1, label=label)
            drawn += 1
    if drawn == 0:
        ax.text(0.5, 0.5, "no person drawn", ha="center", va="center", transform=ax.transAxes)
    elif drawn <= 15:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_xticks(range(k))
    ax.set_xticklabels(names, rotation=60, fontsize=7, ha="right")
    ax.set_xlim(-0.5, k - 0.5)
    ax.set_ylabel("tag value")
    ax.set_title(f"associative-embedding tags of detected joints ({drawn} people drawn)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()


def side_by_side(images: Sequence[np.ndarray], labels: Sequence[str], gap: int = 8) -> np.ndarray:
    """Equal-height RGB images in a row with a caption on each (e.g. prediction | ground truth)."""
    if not images or len(images) != len(labels):
        raise ValueError("side_by_side needs one label per image and at least one image")
    h = max(im.shape[0] for im in images)
    parts = []
    for n, (im, text) in enumerate(zip(images, labels, strict=True)):
        w = max(1, round(im.shape[1] * h / im.shape[0]))
        part = np.ascontiguousarray(cv2.resize(im, (w, h)) if im.shape[0] != h else im.copy())
        _label(part, text, scale=max(0.45, h / 800))
        parts.append(part)
        if n < len(images) - 1:
            parts.append(np.full((h, gap, 3), 255, np.uint8))
    return np.concatenate(parts, axis=1)
