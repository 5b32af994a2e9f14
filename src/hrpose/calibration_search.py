"""INT8 activation ranges chosen by accuracy: each candidate calibration (min/max, the mean of
each input's min/max, and several percentiles) is written and scored, and the best one kept.

Which one suits a model depends on it (a W8 did best with a light 99.99 percentile clip, a W32 with
outlier activations collapsed under min/max and kept most of its AP under mean-minmax), so it is
measured instead of guessed. The score is COCO AP on an annotated image set when one is given,
otherwise the AP of the INT8 file's people against the fp32 model's people on the calibration
images (no labels needed).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from torch import nn

from hrpose.evaluation.coco_eval import evaluate_keypoints
from hrpose.evaluation.coco_results import people_as_annotations, people_to_coco
from hrpose.evaluation.pose import image_list, predict_images
from hrpose.predict import Predictor
from hrpose.quantize import (
    MEAN_MINMAX,
    Prepared,
    QuantizeError,
    percentile_range_sets,
    save_atomically,
)
from hrpose.record import ModelRecord

SEARCH_PERCENTILES = (99.999, 99.99, 99.9, 99.5)
REFERENCE_MIN_SCORE = 0.2  # fp32 people scoring less are not reference people (ghosts)

Scorer = Callable[[Path], float]


def int8_predictor(path: Path) -> Predictor:
    """A Predictor of an INT8 file (the non-VNNI warning is given once, by the command)."""
    from hrpose.loading import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Predictor.from_loaded(load_model(path))


def validation_scorer(annotations: str | Path, images_dir: str | Path) -> Scorer:
    """COCO AP of an INT8 file's predictions on an annotated image set."""
    annotations, images_dir = Path(annotations), Path(images_dir)
    if not annotations.is_file():
        raise QuantizeError(f"--annotations {annotations}: no such file (a COCO keypoints JSON)")
    if not images_dir.is_dir():
        raise QuantizeError(f"--images {images_dir}: no such folder (the annotated images)")
    listed = image_list(annotations)

    def score(path: Path) -> float:
        results = predict_images(int8_predictor(path), listed, images_dir)
        return float(evaluate_keypoints(results, annotations)[0]["AP"])

    return score


def reference_file(
    predictor: Predictor, images: Sequence[np.ndarray], folder: Path
) -> tuple[Path, list[int]]:
    """A COCO annotation file of ``predictor``'s people on ``images`` (people scoring at least
    :data:`REFERENCE_MIN_SCORE`, joints at least the detection threshold) and its image ids."""
    spec, threshold = predictor.record.keypoint_spec, predictor.record.inference.detection_threshold
    anns: list[dict] = []
    for i, image in enumerate(images):
        people = predictor(image)
        keep = np.asarray(people.scores) >= REFERENCE_MIN_SCORE
        kept = type(people)(people.keypoints[keep], people.scores[keep], people.tags[keep])
        anns += people_as_annotations(kept, i, len(anns) + 1, threshold)
    dataset = {
        "images": [
            {"id": i, "file_name": f"{i}.jpg", "height": im.shape[0], "width": im.shape[1]}
            for i, im in enumerate(images)
        ],
        "annotations": anns,
        "categories": [
            {
                "id": 1,
                "name": "person",
                "keypoints": list(spec.names),
                "skeleton": [[a + 1, b + 1] for a, b in spec.skeleton],
            }  # fmt: skip
        ],
    }
    path = folder / "fp32-people.json"
    path.write_text(json.dumps(dataset))
    return path, list(range(len(images)))


def agreement_scorer(
    model: nn.Module, record: ModelRecord, images: Sequence[np.ndarray], folder: Path
) -> Scorer:
    """AP of an INT8 file's people against the fp32 model's people on ``images``: how much of
    what fp32 finds INT8 still finds, where it finds it (COCO's AP, fp32 as the ground truth)."""
    path, ids = reference_file(Predictor(model, record=record), images, folder)
    if not json.loads(path.read_text())["annotations"]:
        raise QuantizeError(
            f"the fp32 model finds nobody (score >= {REFERENCE_MIN_SCORE}) in the calibration "
            "images, so there is nothing to agree on: calibrate on images with people, or pass "
            "--annotations and --images"
        )

    def score(int8: Path) -> float:
        pred = int8_predictor(int8)
        results = [r for i, im in zip(ids, images, strict=True)
                   for r in people_to_coco(pred(im), i)]  # fmt: skip
        return float(evaluate_keypoints(results, path)[0]["AP"])

    return score


def candidate_name(key: float | str | None) -> str:
    """``minmax``, ``mean-minmax`` or ``percentile P``."""
    if key is None or isinstance(key, str):
        return key or "minmax"
    return f"percentile {key:g}"


DESCRIPTIONS = {
    None: "min/max calibration",
    MEAN_MINMAX: "mean of each input's min/max calibration",
}


def search_calibration(
    model: nn.Module,
    record: ModelRecord,
    images: Sequence[np.ndarray],
    output: str | Path,
    score: Scorer,
    criterion: str,
    percentiles: Sequence[float] = SEARCH_PERCENTILES,
    report: Callable[[str, float], None] | None = None,
) -> tuple[Path, dict[str, float]]:
    """Quantize ``model`` with min/max ranges, mean-minmax and each of ``percentiles``, keep the
    candidate ``score`` rates highest (min/max on a tie) as ``output``; returns the path and
    every candidate's score. ``criterion`` names the score in the file's metadata; ``report``
    sees each score as it comes."""
    import onnx

    output = Path(output)
    with tempfile.TemporaryDirectory(prefix="hrpose-calibration-search-") as tmp:
        prepared = Prepared(model, record, images, Path(tmp))
        sets = percentile_range_sets(prepared.pre, prepared.inputs, percentiles)
        mean = sets.pop(MEAN_MINMAX)
        candidates = [(None, None), (MEAN_MINMAX, mean), *sets.items()]
        scores: dict[str, float] = {}
        files: dict[str, Path] = {}
        for i, (key, ranges) in enumerate(candidates):
            name = candidate_name(key)
            what = DESCRIPTIONS.get(key) or f"{key:g} percentile calibration"
            files[name] = prepared.write(Path(tmp) / f"candidate-{i}.onnx", ranges, what)
            scores[name] = score(files[name])
            if report:
                report(name, scores[name])
        best = max(scores, key=lambda n: scores[n])  # the first (min/max) on a tie
        proto = onnx.load(str(files[best]))
        entry = next(p for p in proto.metadata_props if p.key == "quantization")
        info = json.loads(entry.value)
        info["selection"] = {"criterion": criterion, "chosen": best, "scores": scores}
        entry.value = json.dumps(info)
        output.parent.mkdir(parents=True, exist_ok=True)
        save_atomically(proto, output)
    return output, scores
