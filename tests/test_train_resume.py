"""Exact resume of pose training with 2 loader workers, augmentation and shuffling on.

Each run records its per-step losses; a run stopped at an epoch boundary (or by SIGTERM inside an
epoch) and resumed must give the uninterrupted run's losses exactly.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from hrpose.cli.train import fit_settings, pose_task
from hrpose.config import PoseTrainConfig
from hrpose.config.load import load_config
from hrpose.engine.checkpoint import load_checkpoint
from hrpose.engine.loop import fit

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pose" / "coco-mini.yaml"


def _config(coco_mini: Path, results: Path, *extra: str) -> PoseTrainConfig:
    split = [f"--dataloader.{s}.root={coco_mini}" for s in ("train_ds", "val_ds")]
    return load_config(PoseTrainConfig, CONFIG, [
        *split, f"--setup.results_dir={results}", "--setup.run_name=r", "--setup.seed=5",
        "--model.width=8", "--data.input_size=64", "--data.augment=True", "--data.flip=0.5",
        "--data.repeat=2", "--dataloader.batch_size=2", "--dataloader.shuffle=True",
        "--dataloader.num_workers=2", "--trainer.max_epochs=2", "--trainer.val_every=0",
        "--trainer.progress=False", "--tracking.mlflow=False", "--tracking.log_images=False",
        "--scheduler.name=constant", "--scheduler.warmup_epochs=0", *extra,
    ])  # fmt: skip


def _run(cfg: PoseTrainConfig, losses: list[float], kill_at: int | None = None,
         interrupt_at: int | None = None):  # fmt: skip
    """fit() with the real pose task; the step records its loss (and may SIGTERM us, or stop
    at once with KeyboardInterrupt, which saves nothing)."""

    def build(device, info):
        parts = pose_task(cfg, device, info)
        inner = parts.train_step

        def step(m, batch, ctx):
            if interrupt_at is not None and len(losses) + 1 == interrupt_at:
                raise KeyboardInterrupt
            out = inner(m, batch, ctx)
            losses.append(float(out.loss.detach()))
            if kill_at is not None and len(losses) == kill_at:
                os.kill(os.getpid(), signal.SIGTERM)
            return out

        parts.train_step = step
        return parts

    return fit(fit_settings(cfg), build, "pose")


def test_resume_with_workers_equals_the_straight_run(coco_mini, tmp_path) -> None:
    """Straight: 2 epochs x 4 batches, 2 workers. Interrupted: epoch 1 without workers (stop at
    the boundary), resumed with 2 workers and SIGTERM after batch 2 of epoch 2, resumed again.
    Together they give the straight run's losses (a batch does not depend on the workers)."""
    straight: list[float] = []
    res = _run(_config(coco_mini, tmp_path / "a"), straight)
    assert res.status == "FINISHED" and len(straight) == 8 and len(set(straight)) == 8
    b = tmp_path / "b"
    first: list[float] = []
    _run(_config(coco_mini, b, "--trainer.max_epochs=1", "--dataloader.num_workers=0"), first)
    last = b / "coco-mini" / "r" / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["epoch"] == 1 and first == straight[:4]
    killed: list[float] = []
    res = _run(_config(coco_mini, b, f"--setup.ckpt_path={last}"), killed, kill_at=2)
    assert res.status == "KILLED" and killed == straight[4:6]
    state = load_checkpoint(last)
    assert (state["epoch"], state["epoch_batches"], state["step"]) == (1, 2, 6)
    rest: list[float] = []
    res = _run(_config(coco_mini, b, f"--setup.ckpt_path={last}"), rest)
    assert res.status == "FINISHED" and rest == straight[6:]
    assert load_checkpoint(last)["epoch"] == 2


@pytest.mark.slow
def test_resume_from_a_periodic_checkpoint_equals_the_straight_run(coco_mini, tmp_path) -> None:
    """Checkpoints every 3 steps (and at each epoch end); a run stopped at once in step 8
    (KeyboardInterrupt: nothing saved then) resumes with resume=auto from the periodic one
    after step 6, mid-epoch 2, with 2 workers: steps 7 and 8 equal the straight run's."""
    every = "--trainer.checkpoint_every_steps=3"
    straight: list[float] = []
    _run(_config(coco_mini, tmp_path / "a", every), straight)
    b = tmp_path / "b"
    first: list[float] = []
    with pytest.raises(KeyboardInterrupt):
        _run(_config(coco_mini, b, every), first, interrupt_at=8)
    names = sorted(p.name for p in (b / "coco-mini" / "r" / "checkpoints").glob("step-*.pt"))
    assert names == ["step-00000003.pt", "step-00000004.pt", "step-00000006.pt"]
    assert first == straight[:7]
    rest: list[float] = []
    res = _run(_config(coco_mini, b, every, "--setup.resume=auto"), rest)
    assert res.status == "FINISHED" and rest == straight[6:]
