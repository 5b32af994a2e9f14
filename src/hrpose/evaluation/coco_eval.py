"""COCO keypoint AP with pycocotools (the reference) or faster-coco-eval (identical stats)."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from pathlib import Path

STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
_ROWS = (
    ("Precision", "(AP)", "0.50:0.95", "all"),
    ("Precision", "(AP)", "0.50", "all"),
    ("Precision", "(AP)", "0.75", "all"),
    ("Precision", "(AP)", "0.50:0.95", "medium"),
    ("Precision", "(AP)", "0.50:0.95", "large"),
    ("Recall", "(AR)", "0.50:0.95", "all"),
    ("Recall", "(AR)", "0.50", "all"),
    ("Recall", "(AR)", "0.75", "all"),
    ("Recall", "(AR)", "0.50:0.95", "medium"),
    ("Recall", "(AR)", "0.50:0.95", "large"),
)


def summary_table(stats: dict[str, float]) -> str:
    """The keypoint summary in pycocotools' printed format (maxDets 20)."""
    lines = [
        f" {'Average ' + kind:<18} {short} @[ IoU={iou:<9} | area={area:>6s} | maxDets= 20 ] = "
        f"{stats[name]:0.3f}"
        for name, (kind, short, iou, area) in zip(STAT_NAMES, _ROWS, strict=True)
    ]
    return "\n".join(lines) + "\n"


def _backend(name: str):
    if name == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    if name == "faster-coco-eval":
        try:
            from faster_coco_eval import COCO, COCOeval_faster
        except ImportError as e:
            raise RuntimeError(
                "faster-coco-eval is not installed: pip install 'hrpose[fast-eval]' or use "
                "--backend pycocotools"
            ) from e
        return COCO, COCOeval_faster
    raise ValueError(f"unknown evaluator {name!r}: use pycocotools or faster-coco-eval")


def load_results(path: str | Path) -> list[dict]:
    """A COCO keypoint results JSON (a list of dicts), with clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file not found: {path}")
    try:
        data = json.loads(path.read_text() or "null")
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e
    if not isinstance(data, list):
        raise ValueError(
            f"{path} must hold a JSON list of COCO keypoint results, got {type(data).__name__}"
        )
    return data


def check_results(results: Sequence[dict], image_ids: set[int], annotation_file: object) -> None:
    """Every result names a known image and has 3K keypoint values and a score."""
    unknown = sorted({r.get("image_id") for r in results} - image_ids, key=str)
    if unknown:
        raise ValueError(
            f"{len(unknown)} image id(s) in the results are not in {annotation_file}: "
            f"{unknown[:5]}; were the results made for another split?"
        )
    for i, r in enumerate(results):
        kp = r.get("keypoints")
        if not isinstance(kp, list) or len(kp) % 3 or "score" not in r:
            raise ValueError(f"result {i} needs 'keypoints' (3 values per joint) and a 'score'")


def evaluate_keypoints(
    results: Sequence[dict] | str | Path,
    annotation_file: str | Path,
    *,
    backend: str = "pycocotools",
    image_ids: Sequence[int] | None = None,
    print_summary: bool = False,
) -> tuple[dict[str, float], str]:
    """AP/AR stats and the evaluator's printed summary table, over every image of the file.

    ``results``: COCO keypoint result dicts or a JSON file of them. Images without people count
    (false positives there lower AP). An empty result list gives zeros instead of an error.
    """
    coco_cls, eval_cls = _backend(backend)
    if isinstance(results, str | Path):
        results = load_results(results)
    results = list(results)
    if not Path(annotation_file).is_file():
        raise FileNotFoundError(f"annotation file not found: {annotation_file}")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        gt = coco_cls(str(annotation_file))
    check_results(results, set(gt.getImgIds()), annotation_file)
    if not results:
        stats = dict.fromkeys(STAT_NAMES, 0.0)
        table = summary_table(stats)
        if print_summary:
            print(table, end="")
        return stats, table
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        dt = gt.loadRes(results)
        ev = eval_cls(gt, dt, "keypoints")
        if image_ids is not None:
            ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = {name: float(v) for name, v in zip(STAT_NAMES, ev.stats[:10], strict=True)}
    table = summary_table(stats)
    if print_summary:
        print(table, end="")
    return stats, table
