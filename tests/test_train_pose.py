"""`hrpose train pose` on the real coco-mini data: run folder, MLflow, exact resume, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hrpose.cli import main
from hrpose.engine.checkpoint import load_checkpoint

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pose" / "coco-mini.yaml"


def _args(coco_mini: Path, results: Path, *extra: str) -> list[str]:
    return [
        "train",
        "pose",
        "--config",
        str(CONFIG),
        f"--dataloader.train_ds.root={coco_mini}",
        f"--dataloader.val_ds.root={coco_mini}",
        f"--setup.results_dir={results}",
        "--setup.run_name=r",
        "--model.width=8",
        "--dataloader.batch_size=1",
        "--data.input_size=64",
        "--inference.input_size=64",
        "--data.repeat=1",
        "--trainer.val_every=1",
        "--trainer.limit_val_batches=2",
        "--trainer.progress=False",
        "--tracking.system_metrics=False",
        *extra,
    ]


@pytest.mark.slow
def test_run_folder_mlflow_and_resume(coco_mini, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(_args(coco_mini, tmp_path, "--trainer.max_epochs=2")) == 0
    run = tmp_path / "coco-mini" / "r"
    for name in (
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "metrics.csv",
        "epoch_metrics.png",
        "epoch_metrics.html",
        "config.yaml",
    ):
        assert (run / name).is_file(), name
    last = run / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    assert state["epoch"] == 2 and state["step"] == 8 and "AP" in state["metrics"]
    assert state["extra"]["model_record"]["keypoint_spec"]["names"][0] == "nose"
    run_id = state["tracking_run_id"]
    assert (
        main(_args(coco_mini, tmp_path, "--trainer.max_epochs=3", f"--setup.ckpt_path={last}")) == 0
    )
    state = load_checkpoint(last)
    assert state["epoch"] == 3 and state["step"] == 12 and state["tracking_run_id"] == run_id
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 4
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path.resolve()}/mlflow.db")
    history = client.get_metric_history(run_id, "train/loss")
    assert sorted(m.step for m in history) == [4, 8, 12]  # one more epoch, same run
    assert client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_sigterm_mid_epoch_then_resume(coco_mini, tmp_path) -> None:
    args = _args(
        coco_mini, tmp_path, "--trainer.max_epochs=2", "--data.repeat=50", "--tracking.mlflow=False"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hrpose", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run = tmp_path / "coco-mini" / "r"
    deadline = time.time() + 120
    while not (run / "config.yaml").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "SIGTERM received" in out and "stopped during epoch 1" in out
    last = run / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["epoch"] == 0
    resume = _args(
        coco_mini,
        tmp_path,
        "--trainer.max_epochs=1",
        "--tracking.mlflow=False",
        f"--setup.ckpt_path={last}",
    )
    assert main(resume) == 0 and load_checkpoint(last)["epoch"] == 1


@pytest.mark.slow
def test_torchrun_ddp_matches_single_process(coco_mini, tmp_path) -> None:
    """Two gloo ranks with batch 1 each vs one process with batch 2: same epoch-1 loss (within
    the difference BatchNorm statistics over 1 vs 2 images make)."""
    fixed = [
        "--trainer.max_epochs=1",
        "--tracking.mlflow=False",
        "--data.augment=True",
        "--data.max_rotation=0",
        "--data.min_scale=1",
        "--data.max_scale=1",
        "--data.max_translate=0",
        "--data.flip=0",
        "--trainer.val_every=0",
    ]
    single = _args(coco_mini, tmp_path / "one", *fixed, "--dataloader.batch_size=2")
    assert main(single) == 0
    ddp = _args(
        coco_mini, tmp_path / "two", *fixed, "--dataloader.batch_size=1", "--trainer.use_DDP=True"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "hrpose",
            *ddp,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    def epoch_loss(root: Path) -> float:
        import csv

        with open(root / "coco-mini" / "r" / "metrics.csv") as f:
            return float(next(csv.DictReader(f))["train/loss"])

    one, two = epoch_loss(tmp_path / "one"), epoch_loss(tmp_path / "two")
    assert abs(one - two) / one < 0.25, (one, two)
    state = load_checkpoint(tmp_path / "two" / "coco-mini" / "r" / "checkpoints" / "last.pt")
    assert state["step"] == 2  # 4 images / (2 ranks x batch 1)
