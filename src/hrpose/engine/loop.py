"""The one training loop shared by pose and classifier training.

A task supplies its model, loader, a step function and a validation function (``TaskParts``);
this module owns everything around them: device, DDP, AMP, channels_last, compile, LR schedule,
gradient clipping, checkpoints (atomic, exact resume), SIGINT/SIGTERM, NaN stops, progress bars,
and tracking (MLflow + run-folder files). Only rank 0 writes. It takes plain values
(``engine.settings.FitSettings``: the config's run sections) and never reads the config tree.

Resume: last.pt after an epoch starts the next one; last.pt saved on SIGINT/SIGTERM holds the
batch position and the epoch's running sums, and the resumed run continues at the next batch
(build_loader's sampler starts there; the data do not depend on workers or RNG state), so either
way the per-step losses equal those of an unbroken run.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor, nn

from hrpose.data.loaders import EpochSampler
from hrpose.engine import distributed as dist_utils
from hrpose.engine.checkpoint import (
    load_checkpoint,
    rng_state,
    run_dir_of,
    save_checkpoint,
    set_rng_state,
)
from hrpose.engine.optim import build_optimizer, learning_rate, param_groups, set_lr
from hrpose.engine.settings import (
    FitSettings,
    OptimizerSettings,
    SetupSettings,
    TrainerSettings,
)
from hrpose.engine.tracking import (
    MlflowTracker,
    NullTracker,
    RunFiles,
    default_tracking_uri,
    flatten,
)

log = logging.getLogger("hrpose.train")


class TrainingStopped(RuntimeError):
    """The run cannot go on (non-finite loss); the message says what to change."""


@dataclass
class StepContext:
    """What a step function needs besides the model and the batch."""

    device: torch.device
    channels_last: bool = False

    def to_device(self, x: Any) -> Any:
        """Move tensors (nested in lists/dicts) to the device; images get channels_last."""
        if isinstance(x, Tensor):
            x = x.to(self.device, non_blocking=True)
            if self.channels_last and x.dim() == 4 and x.is_floating_point():
                x = x.contiguous(memory_format=torch.channels_last)
            return x
        if isinstance(x, list | tuple):
            return type(x)(self.to_device(v) for v in x)
        if isinstance(x, dict):
            return {k: self.to_device(v) for k, v in x.items()}
        return x


@dataclass
class StepOutput:
    """One training step: the loss to back-propagate and scalar parts for logging."""

    loss: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)
    batch_size: int = 1


@dataclass
class TaskParts:
    """A task as the loop sees it."""

    model: nn.Module
    train_loader: Any
    train_step: Callable[[nn.Module, Any, StepContext], StepOutput]
    validate: Callable[[nn.Module, StepContext], dict[str, float]] | None
    best_metric: str  # higher is better, e.g. "AP" or "top1"
    sample_image: Callable[[Any], Any] | None = None  # batch -> HxWx3 uint8 for logging
    # (model, ctx) -> {name: HxWx3 uint8 RGB}: pictures written at every validation
    val_images: Callable[[nn.Module, StepContext], dict[str, np.ndarray]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # stored in checkpoints


def resolve_device(accelerator: str) -> torch.device:
    """auto -> cuda if available (else mps, else cpu); explicit names are checked."""
    if accelerator == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if accelerator == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "trainer.accelerator=cuda but no CUDA device is visible; use auto or cpu"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("trainer.accelerator=mps but MPS is not available; use auto or cpu")
    return torch.device(accelerator)


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: auto = bf16 on CUDA when supported, else fp16; CPU runs in fp32."""
    if mode == "off":
        return None
    if mode == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop saves last.pt at the next step and exits cleanly."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.signal = signum
        print(
            f"\n{signal.Signals(signum).name} received: saving last.pt after this step "
            "(press Ctrl-C again to stop at once)",
            file=sys.stderr,
        )

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class FitResult:
    """Where a run wrote its files and how it ended."""

    run_dir: Path
    epochs_done: int
    best: float | None
    last_metrics: dict[str, float]
    status: str  # FINISHED | KILLED


def _new_run_dir(run: SetupSettings) -> Path:
    name = run.run_name or datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(run.results_dir) / run.experiment_name / name
    if (run_dir / "checkpoints" / "last.pt").exists():
        raise FileExistsError(
            f"{run_dir} already holds a run: resume it with "
            f"--setup.ckpt_path={run_dir}/checkpoints/last.pt or pick another --setup.run_name"
        )
    return run_dir


def _make_tracker(s: FitSettings, run_dir: Path, run_id: str | None) -> NullTracker:
    if not s.tracking.mlflow:
        return NullTracker()
    uri = s.tracking.uri or default_tracking_uri(s.setup.results_dir)
    return MlflowTracker(
        uri,
        s.setup.experiment_name,
        run_dir.name,
        run_id=run_id,
        artifact_root=Path(s.setup.results_dir) / "mlartifacts",
        system_metrics=s.tracking.system_metrics,
    )


@dataclass
class Progress:
    """Where training stands. A mid-epoch checkpoint has ``batch`` > 0: the resumed run starts
    at that batch of epoch ``epoch`` with the sums so far, so its epoch equals an unbroken one."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps done
    batch: int = 0  # batches done in the current epoch
    seen: int = 0  # samples this rank trained on in the current epoch
    sums: dict[str, float] = field(default_factory=dict)  # logged values summed this epoch

    def add(self, values: dict[str, float], samples: int) -> None:
        self.step, self.batch, self.seen = self.step + 1, self.batch + 1, self.seen + samples
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def next_epoch(self) -> None:
        self.epoch, self.batch, self.seen, self.sums = self.epoch + 1, 0, 0, {}


@dataclass
class Optimization:
    """One optimizer step: AMP autocast dtype, loss scaling, clipping, the LR at a position."""

    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    lr_at: Callable[[float], float]  # fractional epoch -> LR
    amp_dtype: torch.dtype | None = None
    grad_clip: float | None = None

    def step(self, loss: Tensor, model: nn.Module) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()


def epoch_batches(loader: Any, epoch: int, start: int, steps: int) -> Iterator[Any]:
    """Batches ``start``..``steps`` of ``epoch``. build_loader's sampler starts there directly
    (nothing read twice); other loaders read and drop the first ``start`` batches."""
    sampler = getattr(loader, "sampler", None)
    skip = start
    if isinstance(sampler, EpochSampler):
        sampler.set_epoch(epoch, start * loader.batch_size)
        skip = 0
    elif hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    # A resume with a shorter epoch than the checkpoint's (e.g. data.repeat lowered) ends it.
    return itertools.islice(iter(loader), skip, skip + max(0, steps - start))


def train_one_epoch(
    model: nn.Module,
    loader: Any,
    train_step: Callable[[nn.Module, Any, StepContext], StepOutput],
    opt: Optimization,
    ctx: StepContext,
    progress: Progress,
    steps: int,
    stop: _StopFlag,
    on_step: Callable[[dict[str, float], float, Any], None] | None = None,
) -> bool:
    """Train from ``progress.batch`` to batch ``steps`` of epoch ``progress.epoch``.

    Returns True when a signal stopped it (after a completed step; ``progress`` says where).
    """
    model.train()
    epoch = progress.epoch
    for batch in epoch_batches(loader, epoch, progress.batch, steps):
        lr = opt.lr_at(epoch + progress.batch / steps)
        set_lr(opt.optimizer, lr)
        with torch.autocast(ctx.device.type, opt.amp_dtype, enabled=opt.amp_dtype is not None):
            out = train_step(model, batch, ctx)
        loss = out.loss.float()
        bad, stopping = dist_utils.any_rank(
            not bool(torch.isfinite(loss.detach())), stop.signal is not None
        )
        if bad:
            raise TrainingStopped(
                f"non-finite loss ({float(loss.detach())}) at epoch {epoch + 1}, step "
                f"{progress.batch + 1}: lower --optimizer.lr (now {lr:g}), enable "
                "--trainer.grad_clip, or use --trainer.amp=off; last.pt keeps the last good epoch"
            )
        opt.step(loss, model)
        values = {"loss": float(loss.detach()), **{k: float(v) for k, v in out.parts.items()}}
        progress.add(values, out.batch_size)
        if on_step is not None:
            on_step(values, lr, batch)
        if stopping:
            return True
    return False


def evaluate(
    validate: Callable[[nn.Module, StepContext], dict[str, float]],
    model: nn.Module,
    ctx: StepContext,
) -> dict[str, float]:
    """Run the task's validation in eval mode without gradients; the model returns to train."""
    model.eval()
    try:
        with torch.no_grad():
            return validate(model, ctx)
    finally:
        model.train()


def fit(
    settings: FitSettings,
    build: Callable[[torch.device, dist_utils.DistInfo], TaskParts],
    task_name: str,
) -> FitResult:
    """Train the task ``build`` makes, as ``settings`` say (cli/train.py makes them)."""
    loop = settings.trainer
    device = resolve_device(loop.accelerator)
    info = dist_utils.init_distributed(loop.use_DDP, device, loop.ddp_timeout_s)
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    seed_everything(settings.setup.seed + info.rank)
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # tiny activations of a fresh net slow CPU math otherwise
    try:
        return _Run(settings, build(device, info), task_name, device, info).train()
    finally:
        dist_utils.cleanup()


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (weight init and anything else that
    draws from them; the data order and augmentation have their own seeds, see data.loaders)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)


def make_optimization(
    model: nn.Module,
    o: OptimizerSettings,
    lr_at: Callable[[float], float],
    loop: TrainerSettings,
    device: torch.device,
) -> Optimization:
    """The optimizer over ``model``'s parameter groups, the AMP dtype and its loss scaler."""
    groups = param_groups(model, o.weight_decay, o.no_decay_norm_bias)
    # The LR is set before every step from lr_at; the start value only fills the groups.
    optimizer = build_optimizer(groups, o.name, lr_at(0.0), o.momentum, o.nesterov, o.betas)
    amp = resolve_amp(loop.amp, device)
    scaler = torch.amp.GradScaler(
        device.type, enabled=amp == torch.float16 and device.type == "cuda"
    )
    return Optimization(optimizer, scaler, lr_at, amp, loop.grad_clip)


def _resume_state(ckpt_path: str | None, task: str) -> dict[str, Any] | None:
    state = load_checkpoint(ckpt_path) if ckpt_path else None
    if state is not None and state.get("task") != task:
        raise ValueError(f"{ckpt_path} is a {state.get('task')!r} checkpoint, not {task!r}")
    return state


class _Run:
    """One training run: builds the optimizer, resumes, then alternates epochs and validation."""

    def __init__(self, s: FitSettings, parts: TaskParts, task: str, device: torch.device,
                 info: dist_utils.DistInfo) -> None:  # fmt: skip
        self.s, self.parts, self.task, self.info = s, parts, task, info
        self.main = info.is_main
        model = parts.model.to(device)
        if s.trainer.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        resume = _resume_state(s.setup.ckpt_path, task)
        if resume is None and s.setup.pretrained_ckpt_path:
            from hrpose.models import load_weights

            report = load_weights(model, s.setup.pretrained_ckpt_path)
            if self.main:
                print(f"pretrained weights {s.setup.pretrained_ckpt_path}: {report.summary()}")
        lr_at = functools.partial(learning_rate, lr=s.optimizer.lr, scheduler=s.scheduler,
                                  max_epochs=s.trainer.max_epochs)  # fmt: skip
        self.opt = make_optimization(model, s.optimizer, lr_at, s.trainer, device)
        self.progress, self.best, run_id = Progress(), None, None
        if resume is not None:
            run_id = self._restore(resume)
            run_dir = run_dir_of(s.setup.ckpt_path)  # type: ignore[arg-type]
        else:
            run_dir = _new_run_dir(s.setup) if self.main else Path()
        self.run_dir = Path(str(dist_utils.broadcast_object(str(run_dir))))
        self.train_model = self._wrap(model, device)
        self.tracker = _make_tracker(s, self.run_dir, run_id) if self.main else NullTracker()
        self.files = (
            RunFiles(self.run_dir, resume["epoch"] if resume else None) if self.main else None
        )
        if self.main:
            self._open_run_folder(resume is not None, device)
        if resume is not None:
            set_rng_state(resume["rng"])
        self.ctx = StepContext(device, s.trainer.channels_last)
        steps = len(parts.train_loader)
        limit = s.trainer.limit_batches
        self.steps = min(steps, limit) if limit else steps
        self.sample_logged = False

    def _restore(self, resume: dict[str, Any]) -> str | None:
        """Weights, optimizer, scaler, progress and best of a checkpoint; its tracking run id."""
        self.model.load_state_dict(resume["model"])
        self.opt.optimizer.load_state_dict(resume["optimizer"])
        if resume.get("scaler"):
            self.opt.scaler.load_state_dict(resume["scaler"])
        self.progress = Progress(
            resume["epoch"],
            resume["step"],
            resume.get("epoch_batches", 0),
            resume.get("epoch_seen", 0),
            dict(resume.get("epoch_sums") or {}),
        )
        self.best = resume.get("best")
        return resume.get("tracking_run_id")

    def _open_run_folder(self, resuming: bool, device: torch.device) -> None:
        """Write config.yaml, log it and the parameters, and say where the run stands."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config_file = self.run_dir / "config.yaml"
        config_file.write_text(yaml.safe_dump(self.s.config, sort_keys=False))
        self.tracker.log_params(flatten(self.s.config))
        self.tracker.log_artifact(config_file)
        p = self.progress
        where = "new run" if not resuming else f"resuming at epoch {p.epoch + 1}" + (
            f", batch {p.batch + 1}" if p.batch else "")  # fmt: skip
        print(f"{self.task} training, {where}: {self.run_dir} (device {device}, "
              f"world {self.info.world_size})")  # fmt: skip

    def _wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        loop = self.s.trainer
        if loop.sync_batchnorm and self.info.enabled:
            if device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            elif self.main:
                print("trainer.sync_batchnorm ignored: SyncBatchNorm needs CUDA devices")
        if loop.use_compile:
            model = torch.compile(model)
        if self.info.enabled:
            ids = [device.index] if device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        return model

    def checkpoint(self, metrics: dict[str, float]) -> dict[str, Any]:
        p, opt = self.progress, self.opt
        return {
            "task": self.task,
            "model": self.model.state_dict(),
            "optimizer": opt.optimizer.state_dict(),
            "scaler": opt.scaler.state_dict() if opt.scaler.is_enabled() else None,
            "scheduler": {
                "name": self.s.scheduler.name,
                "lr": opt.optimizer.param_groups[0]["lr"],
            },  # fmt: skip
            "epoch": p.epoch,
            "step": p.step,
            "epoch_batches": p.batch,
            "epoch_seen": p.seen,
            "epoch_sums": dict(p.sums),
            "rng": rng_state(),
            "config": self.s.config,
            "tracking_run_id": self.tracker.run_id,
            "metrics": metrics,
            "best": self.best,
            "extra": self.parts.extra,
        }

    def train(self) -> FitResult:
        loop, p = self.s.trainer, self.progress
        status, metrics = "FINISHED", {}
        try:
            with _StopFlag() as stop:
                while p.epoch < loop.max_epochs:
                    t0, seen0 = time.perf_counter(), p.seen
                    bar = _progress(loop.progress and self.main, self.steps, p.epoch,
                                    loop.max_epochs)  # fmt: skip
                    if bar is not None:
                        bar.update(p.batch)
                    stopped = train_one_epoch(
                        self.train_model, self.parts.train_loader, self.parts.train_step,
                        self.opt, self.ctx, p, self.steps, stop, self._on_step(bar, t0, seen0),
                    )  # fmt: skip
                    if bar is not None:
                        bar.close()
                    if stopped:
                        status = "KILLED"
                        self._save_stopped(metrics)
                        break
                    metrics = self._end_epoch(time.perf_counter() - t0, p.seen - seen0)
        except BaseException:
            self.tracker.close("FAILED")
            raise
        if self.main:
            for name in ("epoch_metrics.png", "epoch_metrics.html", "metrics.csv"):
                if (self.run_dir / name).exists():
                    self.tracker.log_artifact(self.run_dir / name)
        self.tracker.close(status)
        return FitResult(self.run_dir, p.epoch, self.best, metrics, status)

    def _on_step(self, bar: Any, t0: float, seen0: int) -> Callable:
        log_every, p, world = self.s.trainer.log_every, self.progress, self.info.world_size
        log_images = self.s.tracking.log_images

        def on_step(values: dict[str, float], lr: float, batch: Any) -> None:
            ips = (p.seen - seen0) * world / max(time.perf_counter() - t0, 1e-9)
            if bar is not None:
                bar.set_postfix(loss=f"{values['loss']:.4g}", lr=f"{lr:.2g}", ips=f"{ips:.1f}")
                bar.update()
            if self.main and p.step % log_every == 0:
                logged = {f"step/{k}": v for k, v in values.items()}
                self.tracker.log_metrics({**logged, "step/lr": lr, "step/img_per_s": ips}, p.step)
            if self.main and log_images and not self.sample_logged and self.parts.sample_image:
                self.sample_logged = True
                _log_sample(self.parts.sample_image, batch, self.run_dir, self.tracker)

        return on_step

    def _save_stopped(self, metrics: dict[str, float]) -> None:
        p = self.progress
        if not self.main:
            return
        last = self.run_dir / "checkpoints" / "last.pt"
        save_checkpoint(last, self.checkpoint(metrics))
        print(
            f"stopped during epoch {p.epoch + 1} after batch {p.batch}/{self.steps}; saved "
            f"{last} (resume with --setup.ckpt_path={last}: it continues at the next batch)"
        )

    def _end_epoch(self, elapsed: float, seen: int) -> dict[str, float]:
        loop, p, parts = self.s.trainer, self.progress, self.parts
        n = max(1, p.batch)
        metrics = dist_utils.reduce_mean({f"train/{k}": v / n for k, v in p.sums.items()})
        metrics["lr"] = self.opt.lr_at(p.epoch)
        metrics["img_per_s"] = seen * self.info.world_size / max(elapsed, 1e-9)
        last_epoch = p.epoch + 1 == loop.max_epochs
        validating = bool(parts.validate and loop.val_every
                          and ((p.epoch + 1) % loop.val_every == 0 or last_epoch))  # fmt: skip
        if validating:
            metrics.update(evaluate(parts.validate, self.model, self.ctx))
            if self.main and parts.val_images and self.s.tracking.log_images:
                self._val_pictures(p.epoch + 1)
        improved = False
        value = metrics.get(parts.best_metric)
        if value is not None and math.isfinite(value) and (self.best is None or value > self.best):
            self.best, improved = value, True
        p.next_epoch()
        if self.main:
            ckpt_dir = self.run_dir / "checkpoints"
            save_checkpoint(ckpt_dir / "last.pt", self.checkpoint(metrics))
            if improved:
                save_checkpoint(ckpt_dir / "best.pt", self.checkpoint(metrics))
            assert self.files is not None
            plot = validating or last_epoch or p.epoch % 10 == 0
            self.files.add_epoch(p.epoch, metrics, plot=plot)
            self.tracker.log_metrics(metrics, p.step)
            print(_summary_line(p.epoch - 1, loop.max_epochs, metrics, elapsed, improved))
        dist_utils.barrier()
        return metrics

    def _val_pictures(self, epoch: int) -> None:
        """The task's validation pictures as ``val_images/epoch_NNN_<name>.jpg`` + artifacts."""
        assert self.parts.val_images is not None
        try:
            import cv2

            pictures = evaluate(self.parts.val_images, self.model, self.ctx)
            folder = self.run_dir / "val_images"
            folder.mkdir(parents=True, exist_ok=True)
            for name, image in pictures.items():
                path = folder / f"epoch_{epoch:03d}_{name}.jpg"
                cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, ::-1]))
                self.tracker.log_artifact(path, "val_images")
        except Exception as e:  # a picture is never worth a failed run
            log.warning("could not write the validation pictures: %s", e)


def _progress(enabled: bool, total: int, epoch: int, max_epochs: int) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=f"epoch {epoch + 1}/{max_epochs}", leave=False,
                dynamic_ncols=True)  # fmt: skip


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


def _log_sample(fn: Callable, batch: Any, run_dir: Path, tracker: NullTracker) -> None:
    try:
        import cv2

        image = fn(batch)
        path = run_dir / "train_sample.jpg"
        cv2.imwrite(str(path), image[:, :, ::-1])
        tracker.log_artifact(path)
    except Exception as e:  # a picture is never worth a failed run
        log.warning("could not write the training sample image: %s", e)
