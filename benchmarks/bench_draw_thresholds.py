"""Which people and joints to draw: candidate drawing thresholds measured on real predictions.

Runs the demo model (a HigherHRNet-W8 trained on coco-mini) with the coco-mini config's
inference settings once per image, then for each candidate (person threshold, joint threshold)
counts on coco-mini how many people would be drawn against the 12 annotated ones, how many of
those match an annotation (COCO OKS >= 0.5, one annotation each, best score first) and how many
drawn joints are within the OKS "correct" radius (per-joint similarity >= 0.5); and what would be
drawn on the unannotated examples (one has no person) and the street video. Not a timing; the
baseline is the first row (person threshold 0, joints 0.1), what was drawn before thresholds.
A second table does the same for the longest limb drawn (a multiple of the person's reference
limb), at the default thresholds and with every decoded person (person threshold 0): limbs
between two correct joints against the others, for the reference the drawing uses (the
person's median limb capped at REFERENCE_CAP times the image's typical one) and for the
person's own median alone (cap ``inf``, the earlier rule); and the largest ratios among the
annotated people themselves. Its baseline is ``inf`` (no limit). A third table simulates the
failure the cap is for: people made of the joints of 2-4 annotated people of one image (200
random groupings per image, seed 0), drawn among those people; it counts the limbs joining
two people's joints that go and the annotated people's limbs that stay.

    python benchmarks/bench_draw_thresholds.py [--weights ../shared/data/weights/w8-coco-mini.pt]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from hrpose.config.load import load_config
from hrpose.config.schema import PoseTrainConfig
from hrpose.data.images import list_images, read_image
from hrpose.predict import Predictor
from hrpose.structures import People
from hrpose.viz.draw import (
    JOINT_THRESHOLD,
    PERSON_THRESHOLD,
    REFERENCE_CAP,
    drawn_joints,
    drawn_parts,
)
from hrpose.viz.video import read_video

REPO = Path(__file__).resolve().parents[1]
PERSON = (0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)
JOINT = (0.1, 0.2, 0.3, 0.4)
LIMB = (np.inf, 5.0, 4.0, 3.0, 2.5, 2.0)
CAPS = (REFERENCE_CAP, np.inf)


def joint_similarity(pred: np.ndarray, gt: np.ndarray, area: np.ndarray, sigmas) -> np.ndarray:
    """(P, Q, K) COCO per-joint similarity exp(-d^2 / (2 area (2 sigma)^2)) of pred to gt."""
    var = (2 * np.asarray(sigmas, np.float64)) ** 2
    d2 = ((pred[:, None, :, :2] - gt[None, :, :, :2]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * var * (np.asarray(area)[None, :, None] + np.spacing(1))))


def match(pred: np.ndarray, scores: np.ndarray, gt: np.ndarray, area, sigmas) -> np.ndarray:
    """(P,) index of the annotation each person matches (OKS >= 0.5, greedy by score) or -1."""
    sim = joint_similarity(pred, gt, area, sigmas)
    vis = gt[:, :, 2] > 0
    oks = (sim * vis[None]).sum(-1) / np.maximum(vis.sum(-1), 1)[None]
    out = np.full(len(pred), -1)
    free = np.ones(len(gt), bool)
    for i in np.argsort(-scores, kind="stable"):
        cand = np.where(free, oks[i], -1.0)
        if len(gt) and cand.max() >= 0.5:
            out[i] = int(cand.argmax())
            free[out[i]] = False
    return out


def main() -> None:
    shared = Path(os.environ.get("HRPOSE_SHARED_DATA", REPO.parent / "shared" / "data"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=str(shared / "weights" / "w8-coco-mini.pt"))
    parser.add_argument("--config", default=str(REPO / "configs" / "pose" / "coco-mini.yaml"))
    args = parser.parse_args()
    inf = load_config(PoseTrainConfig, args.config).inference
    predictor = Predictor.from_weights(
        args.weights, input_size=inf.input_size, params=inf.decode_params(), device="cpu"
    )
    sigmas = predictor.spec.sigmas
    ann = json.loads((shared / "coco-mini" / "person_keypoints.json").read_text())
    mini = []  # (people, gt keypoints (Q, K, 3), gt areas)
    for img in ann["images"]:
        anns = [a for a in ann["annotations"] if a["image_id"] == img["id"] and a["num_keypoints"]]
        gt = np.array([a["keypoints"] for a in anns], np.float64).reshape(len(anns), -1, 3)
        image = read_image(shared / "coco-mini" / "images" / img["file_name"])
        mini.append((predictor(image), gt, np.array([a["area"] for a in anns])))
    n_gt = sum(len(g) for _, g, _ in mini)
    examples = [(p.name, predictor(read_image(p))) for p in list_images(shared / "examples")]
    video = [predictor(f) for f in read_video(shared / "video" / "street.mp4")]
    decoded = sum(len(p) for p, _, _ in mini)
    print(
        f"{args.weights}: input {inf.input_size}, flip {inf.flip}, detection threshold "
        f"{inf.detection_threshold}; coco-mini: {decoded} people decoded for {n_gt} annotated; "
        f"examples: {sum(len(p) for _, p in examples)} decoded; street.mp4: "
        f"{sum(len(p) for p in video)} decoded over {len(video)} frames"
    )
    print(
        "person  joint | coco-mini: drawn  match  annotated found  joints ok/drawn"
        " | examples drawn (no-person image) | video drawn/frame"
    )
    for pt in PERSON:
        for jt in JOINT:
            drawn = matched = found = ok_joints = n_joints = 0
            for people, gt, area in mini:
                shown = drawn_joints(people, pt, jt, limb_ratio=np.inf)
                rows = np.flatnonzero(shown.any(1))
                drawn += rows.size
                if rows.size == 0:
                    continue
                kp, sc = people.keypoints[rows].astype(np.float64), people.scores[rows]
                m = match(kp, sc, gt, area, sigmas)
                matched += int((m >= 0).sum())
                found += len(set(m[m >= 0].tolist()))
                sim = joint_similarity(kp, gt, area, sigmas)
                best = sim[np.arange(len(rows)), np.maximum(m, 0)]  # (n, K) vs its match
                good = (best >= 0.5) & (m[:, None] >= 0) & (gt[np.maximum(m, 0), :, 2] > 0)
                ok_joints += int((good & shown[rows]).sum())
                n_joints += int(shown[rows].sum())
            ex = [int(drawn_joints(p, pt, jt, limb_ratio=np.inf).any(1).sum()) for _, p in examples]
            neg = sum(n for (name, _), n in zip(examples, ex, strict=True) if "no_person" in name)
            vid = [int(drawn_joints(p, pt, jt, limb_ratio=np.inf).any(1).sum()) for p in video]
            print(
                f"{pt:6.2f} {jt:6.2f} | {drawn:16d} {matched:6d} {found:9d}/{n_gt:<5d} "
                f"{ok_joints:6d}/{n_joints:<6d} | {sum(ex):14d} ({neg}) "
                f"{' '.join(map(str, ex)):>15s} | {np.mean(vid) if vid else 0:.1f}"
            )
    print("examples in order: " + ", ".join(name for name, _ in examples))
    limb_table(mini, predictor.spec)


def correct_joints(people, rows: np.ndarray, gt: np.ndarray, area, sigmas) -> np.ndarray:
    """(n, K) bool: joints of people ``rows`` within the OKS radius of their matched annotation."""
    kp, sc = people.keypoints[rows].astype(np.float64), people.scores[rows]
    m = match(kp, sc, gt, area, sigmas)
    best = joint_similarity(kp, gt, area, sigmas)[np.arange(len(rows)), np.maximum(m, 0)]
    return (best >= 0.5) & (m[:, None] >= 0) & (gt[np.maximum(m, 0), :, 2] > 0)


def limb_table(mini: list, spec) -> None:
    """Limbs drawn at each longest-limb ratio and reference: between two correct joints vs not."""
    limbs = np.asarray(spec.skeleton).reshape(-1, 2)
    own, typical = [], []
    for _, gt, _ in mini:
        vis = gt[:, :, 2] > 0
        pairs = vis[:, limbs[:, 0]] & vis[:, limbs[:, 1]]
        length = np.linalg.norm(gt[:, limbs[:, 0], :2] - gt[:, limbs[:, 1], :2], axis=2)
        med = np.nanmedian(np.where(pairs, length, np.nan), axis=1, keepdims=True)
        own.append((length / med)[pairs])
        typical.append((length / np.median(med))[pairs])
    print(
        f"\nlongest limb drawn, x the person's reference limb (joints >= {JOINT_THRESHOLD}); the "
        f"annotated people's own limbs reach {np.concatenate(own).max():.2f}x their median and "
        f"{np.concatenate(typical).max():.2f}x their image's median person's median"
    )
    print(
        "limb ratio  reference cap | people >= "
        f"{PERSON_THRESHOLD}: correct limbs drawn  other limbs drawn  joints ok/drawn"
        " | all decoded: correct  other  joints ok/drawn"
    )
    for ratio in LIMB:
        for cap in CAPS if np.isfinite(ratio) else (np.inf,):
            cells = []
            for pt in (PERSON_THRESHOLD, 0.0):
                good = bad = ok_joints = n_joints = 0
                for people, gt, area in mini:
                    joints, drawn = drawn_parts(
                        people, spec, pt, limb_ratio=ratio, reference_cap=cap
                    )
                    rows = np.flatnonzero(joints.any(1))
                    if rows.size == 0:
                        continue
                    ok = correct_joints(people, rows, gt, area, spec.sigmas)
                    both = ok[:, limbs[:, 0]] & ok[:, limbs[:, 1]]
                    good += int((drawn[rows] & both).sum())
                    bad += int((drawn[rows] & ~both).sum())
                    ok_joints += int((ok & joints[rows]).sum())
                    n_joints += int(joints[rows].sum())
                cells.append((good, bad, f"{ok_joints}/{n_joints}"))
            (g1, b1, j1), (g0, b0, j0) = cells
            print(
                f"{ratio:10.2f}  {cap:13.2f} | {g1:33d} {b1:18d} {j1:>16s} | "
                f"{g0:21d} {b0:6d} {j0:>16s}"
            )
    grouping_table(mini, spec)


def grouping_table(mini: list, spec, draws: int = 200) -> None:
    """Simulated wrong groupings: joints of 2-4 annotated people in one person, drawn among them."""
    limbs = np.asarray(spec.skeleton).reshape(-1, 2)
    k = len(spec.names)
    rng = np.random.default_rng(0)
    cases = []  # (keypoints of the annotated people and the grouped one, source of each joint)
    for _, gt, _ in mini:
        if len(gt) < 2:
            continue
        real = gt.copy()
        real[:, :, 2] = np.where(gt[:, :, 2] > 0, 1.0, 0.0)
        for _ in range(draws):
            who = rng.choice(len(gt), int(rng.integers(2, min(len(gt), 4) + 1)), replace=False)
            src = who[rng.integers(0, len(who), k)]
            cases.append((np.concatenate([real, real[src, np.arange(k)][None]]), src))
    print(
        f"\n{len(cases)} simulated people grouped from the joints of 2-4 annotated people "
        "(coco-mini images with 2 or more), each drawn among its image's annotated people"
    )
    print("limb ratio  reference cap | limbs across people cut | annotated people's limbs kept")
    for ratio in (3.0,):
        for cap in CAPS:
            cut = across = kept = total = 0
            for kp, src in cases:
                people = People(kp, np.ones(len(kp)), np.zeros((len(kp), k, 1)))
                _, drawn = drawn_parts(people, spec, 0.5, 0.5, ratio, cap)
                vis = kp[:, :, 2] > 0
                pairs = vis[:, limbs[:, 0]] & vis[:, limbs[:, 1]]
                cross = pairs[-1] & (src[limbs[:, 0]] != src[limbs[:, 1]])
                cut += int((cross & ~drawn[-1]).sum())
                across += int(cross.sum())
                kept += int((drawn[:-1] & pairs[:-1]).sum())
                total += int(pairs[:-1].sum())
            print(
                f"{ratio:10.2f}  {cap:13.2f} | {cut:6d}/{across:<6d} ({cut / across:4.0%})"
                f"       | {kept:6d}/{total}"
            )


if __name__ == "__main__":
    main()
