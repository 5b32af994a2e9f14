"""`hrpose demo` end to end on the bundled data (shortened to one training step), and the
inference settings and weights its prediction stages are given."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from hrpose.cli import main


@pytest.mark.slow
def test_demo_runs_every_stage(shared_data, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HRPOSE_SHARED_DATA", str(shared_data))
    out, results = tmp_path / "out", tmp_path / "results"
    argv = ["demo", "--results-dir", str(results), "--output", str(out)]
    short = [
        "--trainer.max_epochs=1",
        "--data.repeat=1",
        "--trainer.progress=False",
        "--inference.refine=false",
    ]
    assert main([*argv, *short]) == 0
    text = capsys.readouterr().out
    assert "COCO AP" in text and "did NOT reach the goal" in text  # one step learns nothing
    assert "does not generalise" in text
    protocol = json.loads((out / "eval" / "protocol.json").read_text())
    assert protocol["input_size"] == 192 and protocol["flip"] is False  # from the config
    assert protocol["refine"] is False  # an override reaches evaluation through the record
    settings = json.loads((out / "train" / "settings.json").read_text())["settings"]
    assert settings["refine"] is False and settings["detection_threshold"] == 0.3
    assert (out / "eval" / "summary.txt").is_file()
    assert len(list((out / "train").glob("*_vs_gt.jpg"))) == 4  # prediction | ground truth
    assert len(list((out / "examples").glob("*_pose.jpg"))) >= 5
    assert (out / "video" / "street_pose.mp4").stat().st_size > 0
    decoded = len(json.loads((out / "examples" / "predictions.json").read_text()))
    assert f"of {decoded} decoded people drawn" in text  # the final block counts the examples
    assert (results / "mlflow.db").is_file()
    assert list((results / "coco-mini").glob("demo-*/checkpoints/last.pt"))


def _fake_training(seen: dict):
    """Stands in for training: a random W8 checkpoint carrying the record its config describes,
    as a real run's checkpoint does."""

    def train_task(task: str, cfg) -> SimpleNamespace:
        from hrpose.config.load import to_dict
        from hrpose.engine.checkpoint import save_checkpoint
        from hrpose.models import HigherHRNet
        from hrpose.record import record_from_training_config

        run = Path(cfg.setup.results_dir) / "coco-mini" / cfg.setup.run_name
        record = record_from_training_config(to_dict(cfg))
        state = {
            "model": HigherHRNet(8, 17).state_dict(),
            "extra": {"model_record": record.to_dict()},
        }
        save_checkpoint(run / "checkpoints" / "best.pt", state)
        seen["cfg"] = cfg
        return SimpleNamespace(status="FINISHED", run_dir=run)

    return train_task


@pytest.mark.parametrize("weights", [None, "random"])
def test_demo_stages_use_the_records_settings(
    shared_data, tmp_path, capsys, monkeypatch, weights
) -> None:
    """Every stage gets the predictor of the checkpoint's record (the config's inference section
    with its overrides, refine included); other weights run with their own record."""
    import hrpose.cli.eval_pose as eval_pose
    import hrpose.cli.predict as predict
    import hrpose.cli.train as train

    monkeypatch.setenv("HRPOSE_SHARED_DATA", str(shared_data))
    seen: dict = {}
    stages: list[tuple[str, object]] = []
    monkeypatch.setattr(train, "train_task", _fake_training(seen))

    def fake_eval(predictor, target, weights=None):
        stages.append(("eval", predictor))
        return {"AP": 0.6}

    def fake_predict(predictor, source, out, options, set_by=None):
        stages.append((Path(source).name, predictor))
        return 0

    monkeypatch.setattr(eval_pose, "evaluate_predictor", fake_eval)
    monkeypatch.setattr(predict, "run_predict", fake_predict)
    argv = ["--results-dir", str(tmp_path / "r"), "--output", str(tmp_path / "o")]
    argv += ["--inference.tag_threshold=0.9", "--inference.refine=false"]
    argv += ["--weights", weights] if weights else []
    from hrpose.cli import demo

    assert demo.main(argv) == 0
    assert [name for name, _ in stages] == ["eval", "images", "examples", "street.mp4"]
    assert seen["cfg"].inference.refine is False  # the override reached the run's config
    for name, predictor in stages:
        s = predictor.params
        own = weights is None or name in ("eval", "images")
        assert (s.input_size, s.flip, s.detection_threshold) == (
            (192, False, 0.3) if own else (512, True, 0.1)
        )
        assert (s.tag_threshold, s.refine) == ((0.9, False) if own else (1.0, True))
    text = capsys.readouterr().out
    assert ("does not generalise" in text) == (weights is None)
    assert "prediction | ground truth" in text and "street video" in text
