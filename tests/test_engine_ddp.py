"""torchrun + DDP on CPU (gloo): both ranks train, rank 0 writes, a failing rank ends the job,
and pose validation shards the images without padding duplicates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hrpose.engine.checkpoint import load_checkpoint

SCRIPT = Path(__file__).with_name("ddp_toy.py")
POSE_VAL = Path(__file__).with_name("ddp_pose_val.py")


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


def _stats(stdout: str) -> dict:
    return json.loads(next(ln for ln in stdout.splitlines() if ln.startswith("STATS "))[6:])


@pytest.mark.slow
def test_pose_validation_counts_each_image_once(coco_mini, shared_data, tmp_path) -> None:
    """Two ranks validate 3 images: the AP equals one process's. A DistributedSampler-style
    split pads to 4 and predicts image 0 twice, which lowers this AP (0.689 -> 0.631)."""
    args = [str(POSE_VAL), str(coco_mini), str(shared_data / "weights" / "w8-coco-mini.pt")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, *args, "single"], env=env, capture_output=True,
                         text=True, timeout=240)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           *args, "ddp"]  # fmt: skip
    two = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert two.returncode == 0, two.stderr[-3000:]
    single, ddp = _stats(one.stdout), _stats(two.stdout)
    assert single["AP"] > 0.5 and ddp == single
