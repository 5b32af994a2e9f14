"""Run by tests/test_engine_faults.py on a small tmpfs (argv[1]): the toy task fills the disk at
step 5, the save after step 6 meets a real ENOSPC; prints what the test checks."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from hrpose.engine.checkpoints_dir import CheckpointFolder  # noqa: E402
from hrpose.engine.loop import fit  # noqa: E402
from hrpose.engine.task import DiskFull  # noqa: E402
from test_engine_faults import _ckpts, _config, toy_builder  # noqa: E402


def fill(disk: Path) -> None:
    """Write zeros until the filesystem is full."""
    with (disk / "filler").open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


if __name__ == "__main__":
    torch.set_num_threads(1)
    disk = Path(sys.argv[1])
    inner = toy_builder([])

    def build(device, info):
        parts = inner(device, info)
        step, calls = parts.train_step, [0]

        def filling_step(m, batch, ctx):
            calls[0] += 1
            if calls[0] == 5:
                fill(disk)
            return step(m, batch, ctx)

        parts.train_step = filling_step
        return parts

    try:
        fit(_config(disk, "--trainer.checkpoint_every_steps=3"), build, "classifier")
    except DiskFull as e:
        print(f"DiskFull: {e}")
    folder = _ckpts(disk)
    path, state = CheckpointFolder(folder, 3).newest_valid("classifier")
    print(f"newest valid: {path.name} step {state['step']}")
    print(f"temp files: {sorted(p.name for p in folder.glob('.*'))}")
