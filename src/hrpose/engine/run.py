"""One training run between epochs: set up or resumed, advanced epoch by epoch, checkpointed.

:func:`hrpose.engine.loop.fit` creates a :class:`Run`; this module holds the bookkeeping around
the loop (resume, tracker, per-step logging, the epoch's metrics, checkpoints, the summary line).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrpose.engine import distributed as dist_utils
from hrpose.engine import run_dir as run_files
from hrpose.engine.checkpoint import (
    Progress,
    load_pretrained,
    restore,
    resume_state,
    set_rng_state,
    training_state,
)
from hrpose.engine.checkpoints_dir import CheckpointFolder
from hrpose.engine.loop import evaluate, train_one_epoch
from hrpose.engine.optim import learning_rate, make_optimization
from hrpose.engine.settings import FitSettings, SetupSettings
from hrpose.engine.signals import StopFlag
from hrpose.engine.task import DiskFull, FitResult, StepContext, TaskParts, TrainingStopped
from hrpose.engine.tracking import NullTracker, RunFiles, make_tracker
from hrpose.engine.wrapping import place_model, resolve_amp, wrap_model
from hrpose.progress import ProgressBar


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (weight init and anything else that
    draws from them; the data order and augmentation have their own seeds, see data.loaders)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)


def start_point(setup: SetupSettings, task: str,
                first_try: bool = False) -> tuple[str | None, str]:  # fmt: skip
    """Rank 0's choice of (checkpoint to resume or None, run folder): setup.resume=auto (or a
    torchrun restart of a job that opened its run folder) takes the folder's newest valid
    checkpoint, else setup.ckpt_path, else a new run folder (an existing run there is an
    error). ``first_try``: decide as a job's first attempt does."""
    restarts = 0 if first_try else run_files.restart_count()
    if setup.resume == "auto" or restarts > 0:
        run_dir = (run_files.run_dir_of(setup.ckpt_path) if setup.ckpt_path
                   else run_files.resumed_run_dir(setup))  # fmt: skip
        if run_dir is None and setup.resume == "auto":
            raise ValueError("setup.resume=auto needs the run folder: pass --setup.run_name "
                             "(or --setup.ckpt_path)")  # fmt: skip
        if setup.resume != "auto" and not (run_dir and run_files.opened_by_this_job(run_dir)):
            return start_point(setup, task, first_try=True)  # not this job's folder: start
        assert run_dir is not None
        folder = CheckpointFolder(run_dir / "checkpoints", keep=1)
        folder.remove_temp_files()
        path, _ = folder.newest_valid(task)
        if restarts and path is not None:
            folder.check_room(path.stat().st_size)  # a full disk stops every restart at once
            print(f"torchrun restart {restarts}: " + (f"resuming {path}" if path else
                  f"no checkpoint yet in {run_dir}, starting it again"))  # fmt: skip
        return (str(path) if path else None), str(run_dir)
    if setup.ckpt_path:
        return setup.ckpt_path, str(run_files.run_dir_of(setup.ckpt_path))
    return None, str(run_files.new_run_dir(setup))


class Run:
    """One run's state between epochs: set up (or resumed) here, advanced by :meth:`train`.

    Setup steps that can fail on one rank go through ``dist_utils.main_decides`` or
    ``all_succeed``, so such a failure stops every rank at once.
    """

    def __init__(self, s: FitSettings, parts: TaskParts, task: str, device: torch.device,
                 info: dist_utils.DistInfo) -> None:  # fmt: skip
        self.s, self.parts, self.task, self.info, self.main = s, parts, task, info, info.is_main
        t, setup = s.trainer, s.setup
        self.model = place_model(parts.model, device, t.channels_last)
        ckpt_path, run_dir = dist_utils.main_decides(lambda: start_point(setup, task))
        self.run_dir = Path(run_dir)
        self.ckpts = CheckpointFolder(self.run_dir / "checkpoints", t.keep_checkpoints)
        resume = dist_utils.all_succeed(lambda: resume_state(ckpt_path, task))
        if resume is None and setup.pretrained_ckpt_path:
            load_pretrained(self.model, setup.pretrained_ckpt_path, self.main)
        lr_at = functools.partial(learning_rate, lr=s.optimizer.lr, scheduler=s.scheduler,
                                  max_epochs=t.max_epochs)  # fmt: skip
        self.opt = make_optimization(self.model, s.optimizer, lr_at, resolve_amp(t.amp, device),
                                     t.grad_clip, device)  # fmt: skip
        self.progress, self.best, run_id = Progress(), None, None
        if resume is not None:
            self.progress, best, run_id = restore(resume, self.model, self.opt.optimizer,
                                                  self.opt.scaler)  # fmt: skip
            # best.pt's own record wins: it is written first, so it may be one epoch ahead
            self.best = dist_utils.main_decides(lambda: self.ckpts.best_value(best))
            dist_utils.main_decides(lambda: self.ckpts.set_aside_after(self.progress.step))
        self.train_model = wrap_model(self.model, device, info, sync_batchnorm=t.sync_batchnorm,
                                      use_compile=t.use_compile)  # fmt: skip
        self.tracker, self.files = NullTracker(), None
        self.saved_step = self.progress.step if resume is not None else -1
        dist_utils.main_decides(lambda: self._open(resume, run_id, device))
        if resume is not None:
            set_rng_state(resume["rng"])
        self.ctx = StepContext(device, t.channels_last)
        steps, limit = len(parts.train_loader), t.limit_batches
        self.steps = min(steps, limit) if limit else steps
        self.sample_logged = False

    def _open(self, resume: dict[str, Any] | None, run_id: str | None, device: Any) -> None:
        """Rank 0: the tracker, the metric files and the run folder; the run's first line."""
        self.tracker = make_tracker(self.s.tracking, self.s.setup, self.run_dir, run_id)
        self.files = RunFiles(self.run_dir, resume["epoch"] if resume else None)
        run_files.open_run_folder(self.run_dir, self.s.config, self.tracker)
        p = self.progress
        where = "new run" if resume is None else f"resuming at epoch {p.epoch + 1}" + (
            f", batch {p.batch + 1}" if p.batch else "")  # fmt: skip
        print(f"{self.task} training, {where}: {self.run_dir} (device {device}, "
              f"world {self.info.world_size})")  # fmt: skip

    def train(self) -> FitResult:
        """Epochs until trainer.max_epochs or a signal; the tracker run ends with the status.
        An exception saves a checkpoint first when the state is consistent, then propagates."""
        t, p = self.s.trainer, self.progress
        status, metrics = "FINISHED", {}
        try:
            with StopFlag() as stop:
                while p.epoch < t.max_epochs:
                    t0, seen0 = time.perf_counter(), p.seen
                    # Off a terminal the bar stays silent: the epoch's summary line is printed.
                    bar = ProgressBar(self.steps, f"epoch {p.epoch + 1}/{t.max_epochs}",
                                      enabled=t.progress and self.main, leave=False,
                                      summary=False, initial=p.batch)  # fmt: skip
                    stopped = train_one_epoch(
                        self.train_model, self.parts.train_loader, self.parts.train_step,
                        self.opt, self.ctx, p, self.steps, stop, self._on_step(bar, t0, seen0),
                        t.max_bad_steps,
                    )  # fmt: skip
                    bar.close()
                    if stopped:
                        status = "KILLED"
                        self._save_stopped(metrics)
                        break
                    metrics = self._end_epoch(time.perf_counter() - t0, p.seen - seen0)
        except BaseException as e:
            self._before_raising(e, metrics)
            self.tracker.close("FAILED")
            raise
        if self.main:
            run_files.log_run_files(self.run_dir, self.tracker)
        self.tracker.close(status)
        return FitResult(self.run_dir, p.epoch, self.best, metrics, status)

    def checkpoint(self, metrics: dict[str, float],
                   sums: dict[str, float] | None = None) -> dict[str, Any]:  # fmt: skip
        """The checkpoint dict of the run as it stands now (``sums``: the epoch's running sums
        to store instead of this rank's)."""
        p = self.progress
        if sums is not None:
            p = dataclasses.replace(p, sums=sums)
        return training_state(
            self.task, self.model, self.opt.optimizer, self.opt.scaler, p,
            schedule=self.s.scheduler.name, config=self.s.config,
            tracking_run_id=self.tracker.run_id, metrics=metrics, best=self.best,
            extra=self.parts.extra,
        )  # fmt: skip

    def _save(self, metrics: dict[str, float], best: bool = False) -> Path | None:
        """Every rank calls this at the same step; rank 0 commits a step checkpoint (best.pt
        first when ``best``). The stored epoch sums are the ranks' mean: a resumed epoch's
        mean over ranks then equals an unbroken one's."""
        sums = dist_utils.reduce_mean(self.progress.sums)
        if not self.main:
            return None
        state = self.checkpoint(metrics, sums)
        if best:
            self.ckpts.save_best(state)
        path = self.ckpts.save(state)
        self.saved_step = self.progress.step
        return path

    def _on_step(self, bar: ProgressBar, t0: float, seen0: int) -> Callable:
        log_every, p, world = self.s.trainer.log_every, self.progress, self.info.world_size
        every = self.s.trainer.checkpoint_every_steps
        log_images, sample = self.s.tracking.log_images, self.parts.sample_image

        def on_step(values: dict[str, float], lr: float, batch: Any) -> None:
            ips = (p.seen - seen0) * world / max(time.perf_counter() - t0, 1e-9)
            if bar.enabled:
                bar.set_postfix(loss=f"{values['loss']:.4g}", lr=f"{lr:.2g}", ips=f"{ips:.1f}")
                bar.update()
            if self.main and p.step % log_every == 0:
                logged = {f"step/{k}": v for k, v in values.items()}
                self.tracker.log_metrics({**logged, "step/lr": lr, "step/img_per_s": ips}, p.step)
            if self.main and log_images and not self.sample_logged and sample:
                self.sample_logged = True
                run_files.save_train_sample(self.run_dir, lambda: sample(batch), self.tracker)
            if every and p.step % every == 0 and p.batch < self.steps:  # epoch end saves anyway
                self._save({})

        return on_step

    def _save_stopped(self, metrics: dict[str, float]) -> None:
        p = self.progress
        path = self._save(metrics) if p.step != self.saved_step else None
        if self.main:
            print(
                f"stopped during epoch {p.epoch + 1} after batch {p.batch}/{self.steps}; saved "
                f"{path or self.ckpts.folder / 'last.pt'} (resume with {self._resume_flags()}: "
                "it continues at the next batch)"
            )

    def _before_raising(self, e: BaseException, metrics: dict[str, float]) -> None:
        """An exception leaves the loop: save a checkpoint on rank 0 when the state is
        consistent and not saved yet (no collective: other ranks may be gone). A full disk or
        a non-finite loss saves nothing (the previous checkpoints are the good ones)."""
        e.during_training = True  # type: ignore[attr-defined]  # cli: a traceback, not one line
        p = self.progress
        if not self.main:
            return
        if isinstance(e, TrainingStopped):
            newest = self.ckpts.step_files()
            if not isinstance(e, DiskFull):
                kept = f"the last good checkpoint {newest[0]} is kept" if newest else (
                    "no checkpoint was saved yet")  # fmt: skip
                e.args = (f"{e}; {kept}",)
            return
        if not isinstance(e, Exception) or p.updating or p.bad_in_row or p.step == self.saved_step:
            return
        try:
            path = self.ckpts.save(self.checkpoint(metrics))
        except Exception as save_error:
            print(f"could not save a checkpoint before the error: {save_error}")
            return
        print(f"{type(e).__name__} at epoch {p.epoch + 1}, batch {p.batch}: saved {path} first "
              f"(resume with {self._resume_flags()})")  # fmt: skip

    def _resume_flags(self) -> str:
        return f"--setup.resume=auto --setup.run_name={self.run_dir.name}"

    def _end_epoch(self, elapsed: float, seen: int) -> dict[str, float]:
        """Epoch metrics, validation when due, best value, checkpoints, files and the summary."""
        t, p, parts = self.s.trainer, self.progress, self.parts
        n = max(1, p.trained)
        metrics = dist_utils.reduce_mean({f"train/{k}": v / n for k, v in p.sums.items()})
        metrics["lr"] = self.opt.lr_at(p.epoch)
        metrics["img_per_s"] = seen * self.info.world_size / max(elapsed, 1e-9)
        if p.skipped:
            metrics["skipped_steps"] = float(p.skipped)
        last_epoch = p.epoch + 1 == t.max_epochs
        validating = bool(parts.validate and t.val_every
                          and ((p.epoch + 1) % t.val_every == 0 or last_epoch))  # fmt: skip
        if validating:
            metrics.update(evaluate(parts.validate, self.model, self.ctx))
            if self.main and parts.val_images and self.s.tracking.log_images:
                render = functools.partial(evaluate, parts.val_images, self.model, self.ctx)
                run_files.save_val_pictures(self.run_dir, p.epoch + 1, render, self.tracker)
        improved, saving = False, not p.bad_in_row  # no checkpoint while the loss is not finite
        value = metrics.get(parts.best_metric)
        if (saving and value is not None and math.isfinite(value)
                and (self.best is None or value > self.best)):  # fmt: skip
            self.best, improved = value, True
        p.next_epoch()
        if saving:
            self._save(metrics, best=improved)
        if self.main:
            assert self.files is not None
            plot = validating or last_epoch or p.epoch % 10 == 0
            self.files.add_epoch(p.epoch, metrics, plot=plot)
            self.tracker.log_metrics(metrics, p.step)
            print(_summary_line(p.epoch - 1, t.max_epochs, metrics, elapsed, improved))
        dist_utils.barrier()
        return metrics


def _summary_line(
    epoch: int, max_epochs: int, metrics: dict[str, float], elapsed: float, improved: bool
) -> str:
    shown = "  ".join(
        f"{k.removeprefix('train/')} {v:.4g}" for k, v in metrics.items() if k != "img_per_s"
    )
    star = "  (best)" if improved else ""
    return (
        f"epoch {epoch + 1}/{max_epochs}  {shown}  {metrics.get('img_per_s', 0):.1f} img/s  "
        f"{elapsed:.1f} s{star}"
    )
