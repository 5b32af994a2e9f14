"""Real faults under torchrun (CPU, gloo, 2 ranks): a SIGKILLed worker and a torchrun restart
that resumes exactly; an existing run folder that stops both ranks at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("ddp_faults.py")


def _torchrun(results: Path, *args: str, env: dict[str, str] | None = None,
              restarts: int = 0) -> subprocess.CompletedProcess:  # fmt: skip
    results.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           f"--max-restarts={restarts}", str(SCRIPT), str(results), *args]  # fmt: skip
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=120)


def _losses(results: Path, rank: int) -> list[tuple[str, str]]:
    """(attempt, loss repr) per step, in order."""
    lines = (results / f"losses-rank{rank}.txt").read_text().splitlines()
    return [tuple(line.split()) for line in lines]  # type: ignore[misc]


@pytest.mark.slow
def test_sigkilled_worker_restarts_and_resumes_exactly(tmp_path) -> None:
    """Rank 0, the one that writes checkpoints, SIGKILLs itself before its 6th step (no handler
    runs, nothing is saved). torchrun restarts both workers; they find the run folder by the
    job id (no run_name given) and resume from the periodic checkpoint after step 3 (every 3
    steps). Every step from there has the unbroken run's loss, on both ranks."""
    every = "--trainer.checkpoint_every_steps=3"
    straight = _torchrun(tmp_path / "a", every)
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = _torchrun(tmp_path / "b", every, env={"TOY_KILL_RANK": "0", "TOY_KILL_AT": "6"},
                       restarts=1)  # fmt: skip
    out = killed.stdout + killed.stderr
    assert killed.returncode == 0, out[-3000:]
    assert "exitcode: -9" in out and "torchrun restart 1: resuming" in out
    assert "rank 0 done epochs=2" in out and "rank 1 done epochs=2" in out
    (run,) = (tmp_path / "b" / "classifier").iterdir()
    assert f"resuming {run}/checkpoints/step-00000003.pt" in out
    for rank in (0, 1):
        unbroken = [loss for _, loss in _losses(tmp_path / "a", rank)]
        steps = _losses(tmp_path / "b", rank)
        first = [loss for attempt, loss in steps if attempt == "0"]
        again = [loss for attempt, loss in steps if attempt == "1"]
        assert len(unbroken) == 16 and len(set(unbroken)) > 8
        assert 5 <= len(first) <= 6 and first == unbroken[: len(first)]
        assert again == unbroken[3:]  # resumed after step 3: steps 4..16, equal losses
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["best.pt", "best.pt.json", "last.pt", "step-00000012.pt",
                     "step-00000012.pt.json", "step-00000015.pt", "step-00000015.pt.json",
                     "step-00000016.pt", "step-00000016.pt.json"]  # fmt: skip


@pytest.mark.slow
def test_existing_run_folder_stops_both_ranks_at_once(tmp_path) -> None:
    """Rank 0 finds a run in the folder: both ranks stop with its message in seconds, not
    after the collective timeout (60 s here; 600 s by default)."""
    args = ("--setup.run_name=r", "--trainer.max_epochs=1")
    assert _torchrun(tmp_path, *args).returncode == 0
    t0 = time.monotonic()
    again = _torchrun(tmp_path, *args)
    elapsed = time.monotonic() - t0
    assert again.returncode != 0 and elapsed < 30, elapsed
    for rank in (0, 1):
        assert f"rank {rank} stopped: {tmp_path}/classifier/r already holds a run" in again.stdout


@pytest.mark.slow
def test_a_non_finite_loss_on_one_rank_is_skipped_on_all(tmp_path) -> None:
    """Rank 1's 3rd loss is NaN: both ranks skip that step (rank 0's loss was finite), the
    job goes on in step (DDP takes a forward without a backward) and finishes."""
    proc = _torchrun(tmp_path, "--setup.run_name=r", env={"TOY_NAN_RANK": "1"})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    rows = (tmp_path / "classifier" / "r" / "metrics.csv").read_text().splitlines()
    epoch1 = dict(zip(rows[0].split(","), rows[1].split(","), strict=True))
    assert epoch1["skipped_steps"] == "1.0" and float(epoch1["train/loss"]) > 0
    assert [len(_losses(tmp_path, rank)) for rank in (0, 1)] == [16, 16]
