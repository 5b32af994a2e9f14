"""The GPU check and bench_train's largest-batch search: their no-GPU answers and the search."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU answer")


def _bench_train():
    spec = importlib.util.spec_from_file_location("bench_train", BENCH / "bench_train.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@no_cuda
def test_gpu_check_without_a_gpu_says_so_and_exits_0() -> None:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(BENCH / "gpu_check.sh")], cwd=BENCH.parent, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA GPU visible" in proc.stdout and "==" not in proc.stdout


@no_cuda
def test_find_max_batch_needs_cuda() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(BENCH / "bench_train.py"), "--find-max-batch"],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "needs a CUDA device" in proc.stdout and "img/s" not in proc.stdout


@pytest.mark.parametrize(("cap", "start", "limit", "found"), [
    (100, 12, 1024, 96),  # 12..192 doubled, then bisected until within 1/8: 96 fits, 108 not
    (5, 12, 1024, 5),  # the start does not fit: bisect below it
    (0, 12, 1024, 0),  # nothing fits
    (5000, 12, 256, 256),  # stops at the limit
])  # fmt: skip
def test_largest_batch_doubles_then_bisects(cap: int, start: int, limit: int, found: int) -> None:
    tried: list[int] = []

    def fits(n: int) -> bool:
        tried.append(n)
        return n <= cap

    assert _bench_train().largest_batch(fits, start, limit, 0.125) == found
    assert tried[0] == start and len(tried) == len(set(tried)) and len(tried) <= 10
