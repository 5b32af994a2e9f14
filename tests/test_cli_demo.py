"""`hrpose demo` end to end on the bundled data, shortened to one training step."""

from __future__ import annotations

import json

import pytest

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
    protocol = json.loads((out / "eval" / "protocol.json").read_text())
    assert protocol["input_size"] == 192 and protocol["flip"] is False  # from the config
    assert (out / "eval" / "summary.txt").is_file()
    assert len(list((out / "examples").glob("*.jpg"))) >= 5
    assert (out / "video" / "street_pose.mp4").stat().st_size > 0
    assert (results / "mlflow.db").is_file()
    assert list((results / "coco-mini").glob("demo-*/checkpoints/last.pt"))
