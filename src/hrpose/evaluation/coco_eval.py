"""Keypoint AP of COCO-format results, with the protocol the annotation file calls for.

COCO (pycocotools, the reference, or faster-coco-eval: identical stats): area ranges, OKS sigmas
of the file's keypoint set. CrowdPose (every image has a ``crowdIndex``): faster-coco-eval's
``keypoints_crowd``, a port of crowdposetools: no areas (the OKS scale is 0.53 x the box area),
maxDets 20, and AP on easy / medium / hard images split by ``crowdIndex`` at 0.2 and 0.8 (the
thresholds of crowdposetools' code; the CrowdPose paper states 0.1 and 0.8).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hrpose.data.coco import DatasetError, keypoint_spec_of

STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
CROWDPOSE_STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "AR",
    "AR50",
    "AR75",
    "AP_easy",
    "AP_medium",
    "AP_hard",
)
_ROWS = tuple(
    (kind, short, iou, "area", group)
    for kind, short in (("Precision", "(AP)"), ("Recall", "(AR)"))
    for iou, group in (
        ("0.50:0.95", "all"), ("0.50", "all"), ("0.75", "all"),
        ("0.50:0.95", "medium"), ("0.50:0.95", "large"),
    )
)  # fmt: skip
# CrowdPose: no area ranges; AP per image type instead.
_CROWDPOSE_ROWS = (
    *_ROWS[:3],
    *_ROWS[5:8],
    *(("Precision", "(AP)", "0.50:0.95", "type", t) for t in ("easy", "medium", "hard")),
)
# crowdposetools splits images by crowdIndex: easy < 0.2 <= medium < 0.8 <= hard.
CROWD_INDEX_SPLIT = (0.2, 0.8)


def summary_table(stats: dict[str, float], protocol: str = "coco") -> str:
    """The keypoint summary in pycocotools' (COCO) or crowdposetools' (CrowdPose) printed format."""
    crowd = protocol == "crowdpose"
    names, rows = (CROWDPOSE_STAT_NAMES, _CROWDPOSE_ROWS) if crowd else (STAT_NAMES, _ROWS)
    lines = [
        f" {'Average ' + kind:<18} {short} @[ IoU={iou:<9} | {key}={group:>6s} | maxDets= 20 ] = "
        f"{stats[name]:0.3f}"
        for name, (kind, short, iou, key, group) in zip(names, rows, strict=True)
    ]
    return "\n".join(lines) + "\n"


def detect_protocol(dataset: Mapping) -> str:
    """``"crowdpose"`` if every image of a COCO-format dict has a ``crowdIndex``, else "coco"."""
    images = dataset.get("images") or []
    return "crowdpose" if images and all("crowdIndex" in im for im in images) else "coco"


def evaluator_name(annotation_file: str | Path, backend: str = "pycocotools") -> str:
    """The evaluator :func:`evaluate_keypoints` uses for this file (recorded with the results)."""
    with open(annotation_file) as f:
        protocol = detect_protocol(json.load(f))
    return "faster-coco-eval keypoints_crowd" if protocol == "crowdpose" else backend


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
                "faster-coco-eval is not installed (hrpose depends on it: it scores COCO with "
                "--backend faster-coco-eval and every CrowdPose file): pip install faster-coco-eval"
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
    (false positives there lower AP). An empty result list gives zeros instead of an error. The
    protocol and the OKS sigmas come from the file (:func:`detect_protocol`, its keypoint set);
    a CrowdPose file is always scored by faster-coco-eval (``backend`` applies to COCO files),
    and its stats are :data:`CROWDPOSE_STAT_NAMES`.
    """
    if isinstance(results, str | Path):
        results = load_results(results)
    results = list(results)
    if not Path(annotation_file).is_file():
        raise FileNotFoundError(f"annotation file not found: {annotation_file}")
    with open(annotation_file) as f:
        dataset = json.load(f)
    protocol = detect_protocol(dataset)
    try:
        sigmas = np.array(keypoint_spec_of(dataset).sigmas)
    except DatasetError as e:
        raise ValueError(f"{annotation_file}: {e}") from None
    if protocol == "coco" and not all("area" in a for a in dataset.get("annotations", ())):
        raise ValueError(
            f"{annotation_file}: annotations without 'area', which COCO's protocol needs; a "
            "CrowdPose file (no areas) needs a 'crowdIndex' on every image instead"
        )
    coco_cls, eval_cls = _backend("faster-coco-eval" if protocol == "crowdpose" else backend)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        gt = coco_cls(str(annotation_file))
    check_results(results, set(gt.getImgIds()), annotation_file)
    n_values = {len(r["keypoints"]) for r in results} - {3 * len(sigmas)}
    if n_values:
        raise ValueError(
            f"results have {sorted(n_values)[0] // 3} keypoints per person but {annotation_file} "
            f"has {len(sigmas)}: were they made by a model for another keypoint set?"
        )
    names = CROWDPOSE_STAT_NAMES if protocol == "crowdpose" else STAT_NAMES
    if not results:
        stats = dict.fromkeys(names, 0.0)
        if protocol == "crowdpose":  # a type without images is -1, as the evaluator prints it
            index = [im["crowdIndex"] for im in dataset["images"]
                     if image_ids is None or im["id"] in set(image_ids)]  # fmt: skip
            counts = np.bincount(np.digitize(index, CROWD_INDEX_SPLIT), minlength=3)
            for name, n in zip(names[6:], counts, strict=True):
                stats[name] = 0.0 if n else -1.0
        table = summary_table(stats, protocol)
        if print_summary:
            print(table, end="")
        return stats, table
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        dt = gt.loadRes(results)
        if protocol == "crowdpose":
            ev = eval_cls(gt, dt, "keypoints_crowd", kpt_oks_sigmas=sigmas, use_area=False)
            _restrict_crowd_split(ev, image_ids)
        else:
            ev = eval_cls(gt, dt, "keypoints")
            ev.params.kpt_oks_sigmas = sigmas
        if image_ids is not None:
            ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = {name: float(v) for name, v in zip(names, ev.stats[: len(names)], strict=True)}
    table = summary_table(stats, protocol)
    if print_summary:
        print(table, end="")
    return stats, table


def _restrict_crowd_split(ev: object, image_ids: Sequence[int] | None) -> None:
    """Make the evaluator's easy/medium/hard split use the official thresholds and, when only
    some images are evaluated, only those (the library splits every image of the file)."""
    split = ev.split  # type: ignore[attr-defined]
    keep = None if image_ids is None else set(image_ids)

    def restricted(gt_file: str, first: float = 0.0, second: float = 0.0) -> tuple[list, ...]:
        groups = split(gt_file, *CROWD_INDEX_SPLIT)
        return tuple(g if keep is None else [i for i in g if i in keep] for g in groups)

    ev.split = restricted  # type: ignore[attr-defined]
