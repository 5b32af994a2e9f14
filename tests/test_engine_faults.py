"""Faults a long run meets, on the toy task in one process: periodic checkpoints and their
rotation, resume=auto and a corrupt newest checkpoint, an exception mid-epoch, non-finite
losses, a full disk, an unwritable MLflow store."""

from __future__ import annotations

import dataclasses
import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from hrpose.cli.train import fit_settings
from hrpose.config.load import load_config
from hrpose.config.schema import ClassifierTrainConfig
from hrpose.data.loaders import build_loader
from hrpose.engine.checkpoint import load_checkpoint
from hrpose.engine.checkpoints_dir import CheckpointFolder, check
from hrpose.engine.loop import StepOutput, TaskParts, TrainingStopped, fit
from hrpose.engine.settings import FitSettings
from hrpose.engine.task import DiskFull
from hrpose.engine.tracking import NullTracker, RetryingTracker

DISK_FULL_RUN = Path(__file__).with_name("disk_full_run.py")


def _config(results: Path, *extra: str) -> FitSettings:
    cfg = load_config(ClassifierTrainConfig, overrides=[
        f"--setup.results_dir={results}", "--setup.run_name=toy", "--trainer.max_epochs=4",
        "--trainer.progress=False", "--tracking.mlflow=False", "--optimizer.lr=0.1",
        "--scheduler.milestones=[2]", *extra,
    ])  # fmt: skip
    return fit_settings(cfg)


def toy_builder(log: list, *, nan_at: set[int] = frozenset(), fail_at: int | None = None,
                interrupt_at: int | None = None, weights: list | None = None):  # fmt: skip
    """The toy task (64 samples, batch 16: 4 steps an epoch) with faults at given calls."""

    def build(device, info):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(64, 4, generator=g), torch.randint(0, 3, (64,), generator=g)
        loader = build_loader(torch.utils.data.TensorDataset(x, y), 16, shuffle=True, seed=3)
        calls = {"n": 0}

        def step(m, batch, ctx):
            calls["n"] += 1
            n = calls["n"]
            if weights is not None:
                weights.append(m[0].weight.detach().clone())
            if n == fail_at:
                raise RuntimeError(f"the step failed on purpose at call {n}")
            if n == interrupt_at:
                raise KeyboardInterrupt  # like a second Ctrl-C: stops at once, saves nothing
            xb, yb = ctx.to_device(batch)
            loss = nn.functional.cross_entropy(m(xb), yb)
            if n in nan_at:
                loss = loss * float("nan")
            log.append(float(loss.detach()))
            return StepOutput(loss, {"ce": loss.detach()}, len(xb))

        def validate(m, ctx):
            return {"top1": float((m(x).argmax(1) == y).float().mean()) * 100}

        return TaskParts(model, loader, step, validate, "top1")

    return build


def _straight(tmp_path: Path, *extra: str) -> list[float]:
    losses: list[float] = []
    res = fit(_config(tmp_path / "straight", *extra), toy_builder(losses), "classifier")
    assert res.status == "FINISHED" and len(losses) == 16 and len(set(losses)) == 16
    return losses


def _ckpts(results: Path) -> Path:
    return results / "classifier" / "toy" / "checkpoints"


def test_periodic_checkpoints_commit_rotate_and_resume_exactly(tmp_path) -> None:
    """Every 3 steps and at each epoch end a step checkpoint is committed (file, then sidecar);
    the newest 2 are kept. A run stopped without a save (KeyboardInterrupt at step 8) resumes
    with resume=auto from the periodic checkpoint after step 6: steps 7.. equal the straight
    run's."""
    every = "--trainer.checkpoint_every_steps=3"
    straight = _straight(tmp_path, every, "--trainer.keep_checkpoints=2")
    folder = _ckpts(tmp_path / "straight")
    names = sorted(p.name for p in folder.iterdir())
    kept = ["step-00000015.pt", "step-00000015.pt.json", "step-00000016.pt",
            "step-00000016.pt.json"]  # fmt: skip
    assert names == ["best.pt", "best.pt.json", "last.pt", *kept]
    assert check(folder / "step-00000016.pt") is None and check(folder / "best.pt") is None
    assert (folder / "last.pt").samefile(folder / "step-00000016.pt")
    meta = json.loads((folder / "step-00000015.pt.json").read_text())
    assert (meta["step"], meta["epoch"], meta["batch"]) == (15, 3, 3)

    b = tmp_path / "b"
    first: list[float] = []
    with pytest.raises(KeyboardInterrupt):
        fit(_config(b, every, "--trainer.keep_checkpoints=9"),
            toy_builder(first, interrupt_at=8), "classifier")  # fmt: skip
    assert [p.name for p in CheckpointFolder(_ckpts(b), 9).step_files()] == [
        "step-00000006.pt", "step-00000004.pt", "step-00000003.pt"]  # fmt: skip
    rest: list[float] = []
    res = fit(_config(b, every, "--setup.resume=auto"), toy_builder(rest), "classifier")
    assert res.status == "FINISHED" and first == straight[:7] and rest == straight[6:]


def test_truncated_newest_checkpoint_falls_back_to_the_previous(tmp_path, capsys) -> None:
    straight = _straight(tmp_path)
    b = tmp_path / "b"
    fit(_config(b, "--trainer.max_epochs=2"), toy_builder([]), "classifier")
    newest = _ckpts(b) / "step-00000008.pt"
    newest.write_bytes(newest.read_bytes()[:100])  # cut short, e.g. by a copy to a full disk
    rest: list[float] = []
    fit(_config(b, "--setup.resume=auto"), toy_builder(rest), "classifier")
    said = capsys.readouterr().out
    assert f"checkpoint {newest} is not usable: 100 bytes, its sidecar says" in said
    assert "resuming at epoch 2" in said and rest == straight[4:]
    assert "set step-00000008.pt aside as step-00000008.pt.abandoned" in said
    assert check(newest) is None  # written again by the resumed run


def test_resume_auto_with_all_checkpoints_broken_stops(tmp_path) -> None:
    fit(_config(tmp_path, "--trainer.max_epochs=1"), toy_builder([]), "classifier")
    (_ckpts(tmp_path) / "step-00000004.pt.json").unlink()
    with pytest.raises(ValueError, match="no usable checkpoint in .*--setup.run_name"):
        fit(_config(tmp_path, "--setup.resume=auto"), toy_builder([]), "classifier")


def test_an_exception_saves_a_checkpoint_then_propagates(tmp_path, capsys) -> None:
    """A failure in step 7 (before its update) saves step 6 first and re-raises with its
    traceback; resume=auto continues exactly there."""
    straight = _straight(tmp_path)
    b = tmp_path / "b"
    with pytest.raises(RuntimeError, match="on purpose at call 7") as info:
        fit(_config(b), toy_builder([], fail_at=7), "classifier")
    assert info.traceback[-1].name == "step"  # the original traceback, down to the raise
    saved = _ckpts(b) / "step-00000006.pt"
    assert f"RuntimeError at epoch 2, batch 2: saved {saved} first" in capsys.readouterr().out
    assert load_checkpoint(saved)["epoch_batches"] == 2
    rest: list[float] = []
    fit(_config(b, "--setup.resume=auto"), toy_builder(rest), "classifier")
    assert rest == straight[6:]


def test_a_non_finite_step_is_skipped(tmp_path) -> None:
    """NaN at step 6: no update (the weights step 7 sees are step 6's), counted in
    metrics.csv, and the run finishes."""
    losses: list[float] = []
    weights: list[torch.Tensor] = []
    res = fit(_config(tmp_path), toy_builder(losses, nan_at={6}, weights=weights), "classifier")
    assert res.status == "FINISHED" and len(weights) == 16
    assert torch.equal(weights[5], weights[6]) and not torch.equal(weights[4], weights[5])
    rows = (tmp_path / "classifier" / "toy" / "metrics.csv").read_text().splitlines()
    head = rows[0].split(",")
    epoch2 = dict(zip(head, rows[2].split(","), strict=True))
    assert epoch2["skipped_steps"] == "1.0" and float(epoch2["train/loss"]) > 0


def test_non_finite_steps_in_a_row_stop_the_run(tmp_path) -> None:
    with pytest.raises(TrainingStopped) as info:
        fit(_config(tmp_path, "--trainer.max_bad_steps=3"),
            toy_builder([], nan_at=set(range(6, 17))), "classifier")  # fmt: skip
    kept = _ckpts(tmp_path) / "step-00000004.pt"
    message = str(info.value)
    assert "epoch 2, batch 4/4 (step 8): loss=nan, ce=nan" in message
    assert "3 steps in a row" in message and f"last good checkpoint {kept} is kept" in message
    assert [p.name for p in CheckpointFolder(_ckpts(tmp_path), 3).step_files()] == [kept.name]


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch) -> None:
    """ENOSPC from inside torch.save (after part of the file is written) at the third save:
    the run stops naming the folder and the size, the temp file is gone, nothing is retried,
    and the previous checkpoint loads. (The same on a real full tmpfs: the next test.)"""
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) >= 3:
            f.write(b"\0" * 4096)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(DiskFull) as info:
        fit(_config(tmp_path, "--trainer.checkpoint_every_steps=3"), toy_builder([]),
            "classifier")  # fmt: skip
    folder = _ckpts(tmp_path)
    assert f"for checkpoint step-00000004.pt in {folder}: it needs about" in str(info.value)
    assert len(calls) == 3  # step 3, best.pt, then step 4: not retried
    assert sorted(p.name for p in folder.iterdir()) == [
        "best.pt",
        "best.pt.json",
        "last.pt",
        "step-00000003.pt",
        "step-00000003.pt.json",
    ]
    monkeypatch.setattr(torch, "save", real_save)
    path, state = CheckpointFolder(folder, 3).newest_valid("classifier")
    assert path == folder / "step-00000003.pt" and state["step"] == 3


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = "mkdir -p /tmp && mount -t tmpfs -o size=64k tmpfs /mnt"
    return (
        subprocess.run(["unshare", "-rm", "sh", "-c", probe], capture_output=True).returncode == 0
    )


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="no user namespace to mount a small tmpfs")
def test_a_real_full_disk_keeps_the_previous_checkpoint(tmp_path) -> None:
    """A 1 MiB tmpfs (in a user namespace) holds the run; the step function fills it at step
    5, so the save after step 6 meets a real ENOSPC."""
    mount = tmp_path / "disk"
    mount.mkdir()
    script = (
        f"mount -t tmpfs -o size=1m tmpfs {mount} && exec {sys.executable} {DISK_FULL_RUN} {mount}"
    )
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "DiskFull: no space left on device for checkpoint step-00000006.pt" in out
    assert "newest valid: step-00000004.pt step 4" in out and "temp files: []" in out


def test_an_unwritable_mlflow_store_does_not_stop_training(tmp_path, caplog) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the store's folder should be")
    cfg = _config(tmp_path, "--tracking.mlflow=True", "--tracking.system_metrics=False",
                  f"--tracking.uri=sqlite:///{blocker}/mlflow.db")  # fmt: skip
    res = fit(cfg, toy_builder([]), "classifier")
    assert res.status == "FINISHED" and res.epochs_done == 4
    rows = (tmp_path / "classifier" / "toy" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 5
    assert any("MLflow failed" in r.getMessage() for r in caplog.records)


def test_retrying_tracker_delivers_what_failed(caplog) -> None:
    """A store that fails twice: calls wait and arrive in order once it works."""
    got: list = []

    class Flaky(NullTracker):
        fails = 2

        def log_metrics(self, metrics, step):
            if Flaky.fails:
                Flaky.fails -= 1
                raise OSError("database is locked")
            got.append((step, dict(metrics)))

    tracker = RetryingTracker(Flaky, retry_s=0.0)
    for step in range(3):
        tracker.log_metrics({"loss": float(step)}, step)
    tracker.close()
    assert got == [(0, {"loss": 0.0}), (1, {"loss": 1.0}), (2, {"loss": 2.0})]
    assert sum("database is locked" in r.getMessage() for r in caplog.records) == 2


def test_best_pt_is_the_record_of_the_best_value(tmp_path, capsys) -> None:
    """best.pt is written before the step checkpoint that records its value, and a resume
    takes the best value from best.pt's sidecar; a broken best.pt gives none (the next
    validation writes a new one)."""
    folder = CheckpointFolder(tmp_path, keep=2)
    folder.save({"step": 4, "epoch": 1, "best": 50.0})
    folder.save_best({"step": 8, "epoch": 2, "best": 60.0})  # interrupted before its step file
    assert folder.best_value(50.0) == 60.0
    best = tmp_path / "best.pt"
    best.write_bytes(best.read_bytes()[:-1])
    assert folder.best_value(50.0) is None
    assert "best.pt in" in capsys.readouterr().out


@pytest.mark.parametrize(
    "override, message",
    [("--trainer.checkpoint_every_steps=-1", "checkpoint_every_steps must be >= 0"),
     ("--trainer.keep_checkpoints=0", "keep_checkpoints must be >= 1"),
     ("--trainer.max_bad_steps=0", "max_bad_steps must be >= 1"),
     ("--setup.resume=yes", "setup.resume must be one of")],
)  # fmt: skip
def test_fault_settings_are_checked(tmp_path, override: str, message: str) -> None:
    from hrpose.config.load import ConfigError

    with pytest.raises((ConfigError, ValueError), match=message):
        _config(tmp_path, override)


def test_a_torchrun_restart_continues_only_its_own_run_folder(tmp_path, monkeypatch) -> None:
    """A restarted job (TORCHELASTIC_RESTART_COUNT=1) resumes the folder its first attempt
    opened, found by the job id even without a run_name; a folder that another job left is
    refused as on a first attempt (a first attempt that failed on it must not take it over)."""
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-a")
    fit(_config(tmp_path, "--trainer.max_epochs=1"), toy_builder([]), "classifier")
    assert (tmp_path / "classifier" / "toy" / "torchelastic_run_id").read_text() == "job-a\n"
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    unnamed = _config(tmp_path, "--trainer.max_epochs=2")
    unnamed = dataclasses.replace(unnamed, setup=dataclasses.replace(unnamed.setup, run_name=None))
    res = fit(unnamed, toy_builder([]), "classifier")
    assert res.run_dir.name == "toy" and res.epochs_done == 2
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-b")
    with pytest.raises(FileExistsError, match="already holds a run"):
        fit(_config(tmp_path, "--trainer.max_epochs=3"), toy_builder([]), "classifier")


def test_a_restart_on_a_full_disk_stops_before_training(tmp_path, monkeypatch) -> None:
    """After a full disk, torchrun would restart the job into the same wall: a restart whose
    disk lacks room for one more checkpoint stops at once, redoing no step."""
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-a")
    fit(_config(tmp_path, "--trainer.max_epochs=1"), toy_builder([]), "classifier")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=100))
    steps: list[float] = []
    with pytest.raises(DiskFull, match=r"next checkpoint in .*checkpoints: it needs about"):
        fit(_config(tmp_path, "--trainer.max_epochs=2"), toy_builder(steps), "classifier")
    assert steps == []


def test_a_skipped_step_that_poisons_batchnorm_stops_at_once() -> None:
    """A non-finite forward may leave NaN in BatchNorm's running statistics, which training
    mode never reads: such a skip stops the run at once instead of counting on."""
    from hrpose.engine.checkpoint import Progress
    from hrpose.engine.loop import check_bad_steps

    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
    progress = Progress(epoch=1, step=7, batch=3)
    progress.skip()
    check_bad_steps(model, progress, 5, 4, {"loss": float("nan")}, 0.1)  # 1 of 5: goes on
    model[1].running_mean[0] = float("nan")
    with pytest.raises(TrainingStopped, match=r"batch 4/4 \(step 8\): loss=nan.*BatchNorm"):
        check_bad_steps(model, progress, 5, 4, {"loss": float("nan")}, 0.1)
