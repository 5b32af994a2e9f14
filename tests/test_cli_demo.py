"""`hrpose demo` end to end on the bundled data (shortened to one training step), and the
inference settings and weights its prediction stages are given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import hrpose.cli
from hrpose.cli import main


@pytest.mark.slow
def test_demo_runs_every_stage(shared_data, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HRPOSE_SHARED_DATA", str(shared_data))
    out, results = tmp_path / "out", tmp_path / "results"
    argv = ["demo", "--results-dir", str(results), "--output", str(out)]
    short = ["--trainer.max_epochs=1", "--data.repeat=1", "--trainer.progress=False"]
    assert main([*argv, *short]) == 0
    text = capsys.readouterr().out
    assert "COCO AP" in text and "did NOT reach the goal" in text  # one step learns nothing
    assert "does not generalise" in text
    protocol = json.loads((out / "eval" / "protocol.json").read_text())
    assert protocol["input_size"] == 192 and protocol["flip"] is False  # from the config
    assert (out / "eval" / "summary.txt").is_file()
    assert len(list((out / "train").glob("*_vs_gt.jpg"))) == 4  # prediction | ground truth
    assert len(list((out / "examples").glob("*_pose.jpg"))) >= 5
    assert (out / "video" / "street_pose.mp4").stat().st_size > 0
    decoded = len(json.loads((out / "examples" / "predictions.json").read_text()))
    assert f"of {decoded} decoded people drawn" in text  # the final block counts the examples
    assert (results / "mlflow.db").is_file()
    assert list((results / "coco-mini").glob("demo-*/checkpoints/last.pt"))


def _fake_cli(calls: list[list[str]]):
    """Stands in for the sub-commands: records argv and writes what the demo reads next."""

    def cli(argv: list[str]) -> int:
        calls.append(argv)
        opt = {a: b for a, b in zip(argv, argv[1:], strict=False)}
        if argv[0] == "train":
            flags = dict(a.split("=", 1) for a in argv if a.startswith("--setup."))
            run = Path(flags["--setup.results_dir"]) / "coco-mini" / flags["--setup.run_name"]
            (run / "checkpoints").mkdir(parents=True)
            (run / "checkpoints" / "best.pt").write_bytes(b"")
        elif argv[0] == "eval":
            Path(opt["--output"]).mkdir(parents=True)
            (Path(opt["--output"]) / "protocol.json").write_text('{"stats": {"AP": 0.6}}')
        return 0

    return cli


@pytest.mark.parametrize("weights", [None, "other.pth"])
def test_demo_prediction_stages_use_the_config_and_weights(
    shared_data, tmp_path, capsys, monkeypatch, weights
) -> None:
    monkeypatch.setenv("HRPOSE_SHARED_DATA", str(shared_data))
    calls: list[list[str]] = []
    monkeypatch.setattr(hrpose.cli, "main", _fake_cli(calls))
    argv = ["--results-dir", str(tmp_path / "r"), "--output", str(tmp_path / "o")]
    argv += ["--inference.tag_threshold=0.9"] + (["--weights", weights] if weights else [])
    from hrpose.cli import demo

    assert demo.main(argv) == 0
    predicts = [c for c in calls if c[0] == "predict"]
    assert [Path(c[1]).name for c in predicts] == ["images", "examples", "street.mp4"]
    best = next(c for c in calls if c[0] == "eval")[3]
    assert best.endswith("best.pt")
    config = ["--input-size", "192", "--no-flip", "--detection-threshold", "0.3", "--tag-threshold",
              "0.9", "--max-people", "30"]  # fmt: skip
    gt, examples, video = predicts
    assert gt[gt.index("--weights") + 1] == best and "--ground-truth" in gt
    assert " ".join(config) in " ".join(gt)  # the coco-mini config, with its overrides
    for c in (examples, video):
        assert c[c.index("--weights") + 1] == (weights or best)
        # other weights decode with their own settings; the demo model with its config's
        assert (" ".join(config) in " ".join(c)) == (weights is None)
    text = capsys.readouterr().out
    assert ("does not generalise" in text) == (weights is None)
    assert "prediction | ground truth" in text and "street video" in text
