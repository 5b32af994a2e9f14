"""`hrpose demo`: the whole system on the bundled data, on CPU, in minutes.

Trains a small HigherHRNet from scratch on ../shared/data/coco-mini (a deliberate overfit of
four images), evaluates it with the COCO protocol on those same images, draws its predictions
on them beside their ground truth, predicts on the unseen example images and street video
(saying that a 4-image overfit does not generalise), logs the run to the local MLflow store,
and prints what and where everything is. Every prediction stage uses the config's inference
settings (input size, flip, detection/tag thresholds, max people).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from hrpose.viz.draw import JOINT_THRESHOLD, LIMB_RATIO, PERSON_THRESHOLD

REPO = Path(__file__).resolve().parents[3]
MIN_AP = 0.5
UNSEEN = (
    "   note: the demo model learned 4 images; it does not generalise to other images or "
    "videos.\n   Its few confident outputs here are not people it found; with the drawing "
    "thresholds\n   little or nothing is drawn, and that is the honest result of a 4-image overfit."
)


def shared_data_dir() -> Path:
    """``$HRPOSE_SHARED_DATA`` or ``../shared/data`` beside the checkout (or the current folder)."""
    env = os.environ.get("HRPOSE_SHARED_DATA")
    if env:
        return Path(env)
    for base in (Path.cwd(), REPO):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return REPO.parent / "shared" / "data"


def _config_path() -> Path:
    for base in (Path.cwd(), REPO):
        path = base / "configs" / "pose" / "coco-mini.yaml"
        if path.is_file():
            return path
    raise SystemExit("hrpose demo: configs/pose/coco-mini.yaml not found; run it from the checkout")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="hrpose demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", help="use these weights for the prediction part (official/hrpose)")
    p.add_argument("--results-dir", default="results", help="where runs and MLflow live")
    p.add_argument("--output", default="outputs/demo", help="prediction and evaluation outputs")
    p.add_argument(
        "--min-ap",
        type=float,
        default=None,
        help=f"exit with status 1 when the final AP is below this (the goal is {MIN_AP})",
    )
    p.add_argument("overrides", nargs="*", help="extra --section.field=value training overrides")
    args, extra = p.parse_known_args(argv)
    data = shared_data_dir()
    mini = data / "coco-mini"
    if not (mini / "person_keypoints.json").is_file():
        print(
            f"hrpose demo: the bundled data is missing: expected {mini}/person_keypoints.json "
            "(the shared/ folder beside the checkout), or set HRPOSE_SHARED_DATA.",
            file=sys.stderr,
        )
        return 2
    from hrpose.cli.eval_pose import EvalTarget, evaluate_predictor
    from hrpose.cli.predict import PredictOptions, run_predict
    from hrpose.cli.train import train_task
    from hrpose.config import PoseTrainConfig
    from hrpose.config.load import ConfigError, load_config
    from hrpose.loading import load_model
    from hrpose.models import WeightsError
    from hrpose.predict import Predictor

    run_name = time.strftime("demo-%Y%m%d-%H%M%S")
    where = [f"--dataloader.train_ds.root={mini}", f"--dataloader.val_ds.root={mini}",
             f"--setup.results_dir={args.results_dir}", f"--setup.run_name={run_name}"]  # fmt: skip
    try:
        cfg = load_config(PoseTrainConfig, _config_path(), [*where, *args.overrides, *extra])
    except ConfigError as e:
        print(f"hrpose demo: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    out = Path(args.output)
    print(f"== 1/5 training a small HigherHRNet from scratch on {mini} (CPU) ==", flush=True)
    try:
        result = train_task("pose", cfg)
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError) as e:
        print(f"hrpose demo: training failed: {e}", file=sys.stderr)
        return 1
    if result.status != "FINISHED":
        return 130
    run_dir = Path(result.run_dir)
    best = run_dir / "checkpoints" / "best.pt"
    if not best.is_file():
        best = run_dir / "checkpoints" / "last.pt"
    # Every stage below runs the trained model with the settings its checkpoint records (the
    # config's inference section): nothing is restated here.
    trained = Predictor.from_loaded(load_model(best), device="cpu")
    print("\n== 2/5 COCO evaluation on the training images (an overfit, stated as such) ==")
    eval_dir = out / "eval"
    target = EvalTarget(mini / "person_keypoints.json", mini / "images", eval_dir, "coco-mini")
    ap = float(evaluate_predictor(trained, target, weights=str(best))["AP"])
    theirs = args.weights is not None
    try:
        other = Predictor.from_weights(args.weights, device="cpu") if theirs else trained
    except (WeightsError, ValueError) as e:
        print(f"hrpose demo: --weights {args.weights}: {e}", file=sys.stderr)
        return 2
    weights = args.weights or str(best)
    print(f"\n== 3/5 predicting on the {mini.name} images it learned, beside their ground truth ==")
    gt_options = PredictOptions(ground_truth=str(mini / "person_keypoints.json"))
    rc_gt = run_predict(trained, str(mini / "images"), out / "train", gt_options)
    print(f"\n== 4/5 predicting on unseen images, {data / 'examples'}, with {weights} ==")
    if not theirs:
        print(UNSEEN)
    rc_img = run_predict(other, str(data / "examples"), out / "examples", PredictOptions())
    video = data / "video" / "street.mp4"
    print(f"\n== 5/5 predicting on an unseen video, {video}, with {weights} ==")
    rc_vid = run_predict(other, str(video), out / "video", PredictOptions())
    minutes = (time.perf_counter() - t0) / 60
    verdict = (
        f"reached the goal of AP >= {MIN_AP}"
        if ap >= MIN_AP
        else f"did NOT reach the goal of AP >= {MIN_AP} (more epochs: --trainer.max_epochs=N)"
    )
    gt, ex, vid = (_counts(out / d / "predictions.json") for d in ("train", "examples", "video"))
    n_gt = _annotated(mini / "person_keypoints.json")
    unseen = (
        f"with {weights}"
        if theirs
        else "unseen by the 4-image overfit, which does not generalise: what is drawn there is "
        "not a detection of people"
    )
    print(f"""
== demo finished in {minutes:.1f} min ==
  COCO AP {ap:.3f} on its 4 training images: {verdict}
  (a from-scratch overfit, not a measure of generalisation; see the README for the official
  weights and their 67.1 AP on COCO val2017)
  run folder (checkpoints, config.yaml, metrics.csv, epoch_metrics.png): {run_dir}
  evaluation (results JSON, summary.txt, protocol.json): {eval_dir}
  training images, prediction | ground truth side by side (*_vs_gt.jpg; *_pose.jpg):
      {out / "train"}  ({gt[1]} of {gt[0]} decoded people drawn; {n_gt} annotated)
  example images ({unseen}), *_pose.jpg:
      {out / "examples"}  ({ex[1]} of {ex[0]} decoded people drawn)
  street video ({"the same" if theirs else "unseen too"}), tracked ids:
      {out / "video" / "street_pose.mp4"}  ({vid[1]} of {vid[0]} decoded people drawn, all frames)
  every folder's predictions.json keeps all decoded people; only people with score >= \
{PERSON_THRESHOLD} and joints >= {JOINT_THRESHOLD} are drawn, and no limb longer than \
{LIMB_RATIO}x its person's reference limb
  (hrpose predict --person-threshold --joint-threshold --limb-ratio)
  MLflow store: {Path(args.results_dir) / "mlflow.db"}  (browse: mlflow ui --backend-store-uri \
sqlite:///{Path(args.results_dir).resolve() / "mlflow.db"})""")
    if args.min_ap is not None and ap < args.min_ap:
        return 1
    return 0 if rc_gt == 0 and rc_img in (0, 1) and rc_vid == 0 else 1


def _counts(predictions: Path) -> tuple[int, int]:
    """(decoded, drawn) people in a predictions.json of `hrpose predict` (0, 0 when missing)."""
    import json

    import numpy as np

    from hrpose.structures import People
    from hrpose.viz.draw import drawn_joints

    if not predictions.is_file():
        return 0, 0
    rows = json.loads(predictions.read_text())
    if not rows:
        return 0, 0
    kp = np.array([r["keypoints"] for r in rows], np.float32).reshape(len(rows), -1, 3)
    people = People(kp, np.array([r["score"] for r in rows], np.float32), kp[:, :, :1] * 0)
    return len(rows), int(drawn_joints(people).any(axis=1).sum())


def _annotated(annotations: Path) -> int:
    """People with labelled keypoints in a COCO keypoints file."""
    import json

    anns = json.loads(annotations.read_text())["annotations"]
    return sum(1 for a in anns if a.get("num_keypoints", 0) > 0)
