"""hrpose.integrations.ray on a local Ray instance (2 CPUs): the same people as `hrpose predict`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from hrpose.cli import main
from hrpose.data.images import ImageReadError
from hrpose.integrations.ray import PoseEstimator, image_id, to_coco

ray = pytest.importorskip("ray", reason="ray is in the dev extra: pip install -e '.[dev]'")


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
        logging_level="ERROR",
        log_to_driver=False,
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def weights(shared_data: Path) -> str:
    return str(shared_data / "weights" / "w8-coco-mini.pt")


@pytest.fixture(scope="module")
def cli_rows(weights, coco_mini, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("predict")
    assert (
        main(["predict", str(coco_mini / "images"), "--weights", weights, "--output", str(out)])
        == 0
    )
    return json.loads((out / "predictions.json").read_text())


def _by_image(rows) -> dict[int, np.ndarray]:
    out: dict[int, list] = {}
    for r in rows:
        out.setdefault(int(r["image_id"]), []).append([*r["keypoints"], r["score"]])
    return {k: np.array(sorted(v, key=lambda x: -x[-1])) for k, v in out.items()}


def _estimate(ds, weights: str):
    return ds.map_batches(
        PoseEstimator,
        fn_constructor_kwargs={"weights": weights, "threads": 1},
        compute=ray.data.ActorPoolStrategy(size=2),
        batch_size=2,
        num_cpus=0.5,  # a CPU stays free for the read tasks: 2 whole-CPU actors would starve them
    )


def test_ray_finds_the_people_hrpose_predict_finds(local_ray, weights, coco_mini, cli_rows):
    ds = ray.data.read_binary_files(str(coco_mini / "images"), include_paths=True)
    rows = [to_coco(r) for r in _estimate(ds, weights).iter_rows()]
    assert len(cli_rows) > 0 and len(rows) == len(cli_rows)
    mine, theirs = _by_image(rows), _by_image(cli_rows)
    assert sorted(mine) == sorted(theirs) and len(mine) == 4
    for key, expected in theirs.items():
        assert mine[key].shape == expected.shape
        np.testing.assert_allclose(mine[key], expected, atol=2e-3)


def test_ray_decoded_images_give_the_same_people(local_ray, weights, coco_mini, cli_rows):
    ds = ray.data.read_images(str(coco_mini / "images"), include_paths=True, mode="RGB")
    rows = [to_coco(r) for r in _estimate(ds, weights).iter_rows()]
    mine, theirs = _by_image(rows), _by_image(cli_rows)
    assert sorted(mine) == sorted(theirs) and len(mine) == 4
    for key, expected in theirs.items():  # PIL's JPEG decoder, not OpenCV's: pixels may differ
        assert mine[key].shape == expected.shape
        shift = np.abs(mine[key][:, :-1].reshape(len(expected), -1, 3)[..., :2]
                       - expected[:, :-1].reshape(len(expected), -1, 3)[..., :2])  # fmt: skip
        assert np.median(shift) < 1.0, key


def test_bad_images_fail_or_are_skipped(weights, coco_mini, tmp_path):
    name = "000000000785.jpg"
    good = (coco_mini / "images" / name).read_bytes()
    batch = {"path": np.array([f"x/{name}", "x/cut.jpg"], object),
             "bytes": np.array([good, good[: len(good) // 2]], object)}  # fmt: skip
    with pytest.raises(ImageReadError, match="cut.jpg: "):
        PoseEstimator(weights)(batch)
    out = PoseEstimator(weights, skip_bad=True)(batch)
    assert len(out["image_id"]) > 0 and set(out["image_id"]) == {785}
    assert out["keypoints"].shape == (len(out["image_id"]), 51)
    empty = PoseEstimator(weights, skip_bad=True)(
        {"path": batch["path"][1:], "bytes": batch["bytes"][1:]}
    )
    assert {k: v.shape[0] for k, v in empty.items()} == dict.fromkeys(empty, 0)


def test_settings_and_columns_are_checked(weights):
    with pytest.raises(TypeError, match="did you mean input_size"):
        PoseEstimator(weights, input_sise=256)
    estimator = PoseEstimator(weights, input_size=256, detection_threshold=0.2)
    assert estimator.predictor.input_size == 256
    assert estimator.predictor.params.detection_threshold == 0.2
    with pytest.raises(KeyError, match="read_binary_files"):
        estimator({"path": np.array(["a.jpg"], object)})
    with pytest.raises(ImageReadError, match="uint8 RGB"):
        estimator({"path": np.array(["a.png"], object), "image": [np.zeros((4, 4), np.uint8)]})


def test_image_ids_are_stable():
    assert image_id("s3://bucket/val/000000000785.jpg") == 785
    assert image_id("x/street.jpg") == image_id("x/street.jpg") != image_id("y/street.jpg")
    assert 0 <= image_id("x/street.jpg") < 2**31
