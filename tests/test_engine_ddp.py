"""torchrun + DDP on CPU (gloo): both ranks train, rank 0 writes, a failing rank ends the job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hrpose.engine.checkpoint import load_checkpoint

SCRIPT = Path(__file__).with_name("ddp_toy.py")


def _torchrun(tmp_path: Path, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **env_extra}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--standalone", str(SCRIPT), str(tmp_path)]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_ddp_two_ranks(tmp_path) -> None:
    proc = _torchrun(tmp_path, {})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0 done epochs=2" in proc.stdout and "rank 1 done epochs=2" in proc.stdout
    state = load_checkpoint(tmp_path / "classifier" / "ddp" / "checkpoints" / "last.pt")
    assert state["epoch"] == 2 and state["step"] == 8  # 64 samples / 2 ranks / batch 8, 2 epochs
    assert not any(k.startswith("module.") for k in state["model"])


@pytest.mark.slow
def test_failing_rank_ends_the_job(tmp_path) -> None:
    proc = _torchrun(tmp_path, {"TOY_FAIL_RANK": "1"})
    assert proc.returncode != 0
    assert "rank 1 fails on purpose" in proc.stderr + proc.stdout
