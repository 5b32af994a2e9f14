"""The one training loop shared by pose and classifier training.

A task supplies its model, loader, a step function and a validation function (``TaskParts``);
this module owns everything around them: device, DDP, AMP, channels_last, compile, LR schedule,
gradient clipping, checkpoints (atomic, exact resume), SIGINT/SIGTERM, NaN stops, progress bars,
and tracking (MLflow + run-folder files). Only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hrpose.config.load import flatten, to_dict, to_yaml
from hrpose.engine import distributed as dist_utils
from hrpose.engine.checkpoint import (
    load_checkpoint,
    rng_state,
    run_dir_of,
    save_checkpoint,
    set_rng_state,
)
from hrpose.engine.optim import build_optimizer, lr_factor, param_groups, set_lr
from hrpose.engine.tracking import MlflowTracker, NullTracker, RunFiles, default_tracking_uri

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


def _new_run_dir(setup: Any) -> Path:
    name = setup.run_name or datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(setup.results_dir) / setup.experiment_name / name
    if (run_dir / "checkpoints" / "last.pt").exists():
        raise FileExistsError(
            f"{run_dir} already holds a run: resume it with "
            f"--setup.ckpt_path={run_dir}/checkpoints/last.pt or pick another --setup.run_name"
        )
    return run_dir


def _make_tracker(cfg: Any, run_dir: Path, run_id: str | None) -> NullTracker:
    if not cfg.tracking.mlflow:
        return NullTracker()
    uri = cfg.tracking.uri or default_tracking_uri(cfg.setup.results_dir)
    return MlflowTracker(
        uri,
        cfg.setup.experiment_name,
        run_dir.name,
        run_id=run_id,
        artifact_root=Path(cfg.setup.results_dir) / "mlartifacts",
        system_metrics=cfg.tracking.system_metrics,
    )


def _batches(loader: Any, limit: int | None) -> Iterator[Any]:
    for i, batch in enumerate(loader):
        if limit is not None and i >= limit:
            return
        yield batch


def fit(
    cfg: Any,
    build: Callable[[torch.device, dist_utils.DistInfo], TaskParts],
    task_name: str,
) -> FitResult:
    """Train ``cfg`` (a PoseTrainConfig/ClassifierTrainConfig) with the task ``build`` makes."""
    trainer, setup = cfg.trainer, cfg.setup
    device = resolve_device(trainer.accelerator)
    info = dist_utils.init_distributed(trainer.use_DDP, device, trainer.ddp_timeout_s)
    main = info.is_main
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    torch.manual_seed(setup.seed + info.rank)
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # tiny activations of a fresh net slow CPU math otherwise
    try:
        return _fit(cfg, build, task_name, device, info, main)
    finally:
        dist_utils.cleanup()


def _fit(
    cfg: Any,
    build: Callable[[torch.device, dist_utils.DistInfo], TaskParts],
    task_name: str,
    device: torch.device,
    info: dist_utils.DistInfo,
    main: bool,
) -> FitResult:
    trainer, setup = cfg.trainer, cfg.setup
    parts = build(device, info)
    model = parts.model.to(device)
    if trainer.channels_last:
        model = model.to(memory_format=torch.channels_last)

    resume = load_checkpoint(setup.ckpt_path) if setup.ckpt_path else None
    if resume is not None and resume.get("task") != task_name:
        raise ValueError(
            f"{setup.ckpt_path} is a {resume.get('task')!r} checkpoint, not {task_name!r}"
        )
    if resume is None and setup.pretrained_ckpt_path:
        from hrpose.models import load_weights

        report = load_weights(model, setup.pretrained_ckpt_path)
        if main:
            print(f"pretrained weights {setup.pretrained_ckpt_path}: {report.summary()}")

    groups = param_groups(model, cfg.optimizer.weight_decay, cfg.optimizer.no_decay_norm_bias)
    opt_cfg = cfg.optimizer
    optimizer = build_optimizer(
        groups, opt_cfg.name, opt_cfg.lr, opt_cfg.momentum, opt_cfg.nesterov, opt_cfg.betas
    )
    amp_dtype = resolve_amp(trainer.amp, device)
    scaler = torch.amp.GradScaler(
        device.type, enabled=amp_dtype == torch.float16 and device.type == "cuda"
    )

    start_epoch, step, best, run_id = 0, 0, None, None
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        if resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        start_epoch, step, best = resume["epoch"], resume["step"], resume.get("best")
        run_id = resume.get("tracking_run_id")
        run_dir = run_dir_of(setup.ckpt_path)
    else:
        run_dir = _new_run_dir(setup) if main else Path()
    run_dir = Path(str(dist_utils.broadcast_object(str(run_dir))))

    train_model: nn.Module = model
    if trainer.sync_batchnorm and info.enabled:
        if device.type == "cuda":
            train_model = nn.SyncBatchNorm.convert_sync_batchnorm(train_model)
        elif main:
            print("trainer.sync_batchnorm ignored: SyncBatchNorm needs CUDA devices")
    if trainer.use_compile:
        train_model = torch.compile(train_model)
    if info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None
        )

    tracker = _make_tracker(cfg, run_dir, run_id) if main else NullTracker()
    files = RunFiles(run_dir, resume_epoch=start_epoch if resume else None) if main else None
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(to_yaml(cfg))
        tracker.log_params(flatten(to_dict(cfg)))
        tracker.log_artifact(run_dir / "config.yaml")
        where = f"resuming at epoch {start_epoch}" if resume else "new run"
        print(
            f"{task_name} training, {where}: {run_dir} (device {device}, world {info.world_size})"
        )
    if resume is not None:
        set_rng_state(resume["rng"])

    ctx = StepContext(device, trainer.channels_last)
    loader = parts.train_loader
    steps_per_epoch = len(loader)
    if trainer.limit_batches:
        steps_per_epoch = min(steps_per_epoch, trainer.limit_batches)
    sched = cfg.scheduler

    def lr_at(position: float) -> float:
        return opt_cfg.lr * lr_factor(
            position,
            schedule=sched.name,
            max_epochs=trainer.max_epochs,
            milestones=sched.milestones,
            gamma=sched.gamma,
            warmup_epochs=sched.warmup_epochs,
            warmup_factor=sched.warmup_factor,
            min_factor=sched.min_lr_factor,
        )

    def checkpoint_state(epochs_done: int, metrics: dict[str, float]) -> dict[str, Any]:
        return {
            "task": task_name,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "scheduler": {"name": sched.name, "lr": optimizer.param_groups[0]["lr"]},
            "epoch": epochs_done,
            "step": step,
            "rng": rng_state(),
            "config": to_dict(cfg),
            "tracking_run_id": tracker.run_id,
            "metrics": metrics,
            "best": best,
            "extra": parts.extra,
        }

    status, metrics, epoch = "FINISHED", {}, start_epoch
    ckpt_dir = run_dir / "checkpoints"
    try:
        with _StopFlag() as stop:
            for epoch in range(start_epoch, trainer.max_epochs):
                sampler = getattr(loader, "sampler", None)
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(epoch)
                model.train()
                sums: dict[str, float] = {}
                seen, t0, stopping, i, lr = 0, time.perf_counter(), False, -1, lr_at(epoch)
                bar = _progress(trainer.progress and main, steps_per_epoch, epoch, trainer)
                for i, batch in enumerate(_batches(loader, trainer.limit_batches)):
                    lr = lr_at(epoch + i / steps_per_epoch)
                    set_lr(optimizer, lr)
                    with torch.autocast(device.type, amp_dtype, enabled=amp_dtype is not None):
                        out = parts.train_step(train_model, batch, ctx)
                    loss = out.loss.float()
                    loss_value = loss.detach()
                    bad, stopping = dist_utils.any_rank(
                        not bool(torch.isfinite(loss_value)), stop.signal is not None
                    )
                    if bad:
                        raise TrainingStopped(
                            f"non-finite loss ({float(loss_value)}) at epoch {epoch + 1}, "
                            f"step {i + 1}: "
                            f"lower --optimizer.lr (now {lr:g}), enable --trainer.grad_clip, or "
                            "use --trainer.amp=off; last.pt keeps the last good epoch"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    if trainer.grad_clip:
                        scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(model.parameters(), trainer.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    step += 1
                    seen += out.batch_size
                    values = {
                        "loss": float(loss_value),
                        **{k: float(v) for k, v in out.parts.items()},
                    }
                    for k, v in values.items():
                        sums[k] = sums.get(k, 0.0) + v
                    ips = seen * info.world_size / max(time.perf_counter() - t0, 1e-9)
                    if bar is not None:
                        bar.set_postfix(
                            loss=f"{values['loss']:.4g}", lr=f"{lr:.2g}", ips=f"{ips:.1f}"
                        )
                        bar.update()
                    if main and step % trainer.log_every == 0:
                        tracker.log_metrics(
                            {**{f"step/{k}": v for k, v in values.items()}, "step/lr": lr,
                             "step/img_per_s": ips}, step)  # fmt: skip
                    if main and epoch == start_epoch and i == 0 and parts.sample_image:
                        _log_sample(parts.sample_image, batch, run_dir, tracker, cfg)
                    if stopping:
                        break
                if bar is not None:
                    bar.close()
                if stopping:
                    status = "KILLED"
                    if main:
                        save_checkpoint(ckpt_dir / "last.pt", checkpoint_state(epoch, metrics))
                        print(
                            f"stopped during epoch {epoch + 1}; saved {ckpt_dir / 'last.pt'} "
                            f"(resume with --setup.ckpt_path={ckpt_dir / 'last.pt'}; the "
                            "interrupted epoch starts again)"
                        )
                    break
                n = max(1, min(steps_per_epoch, i + 1))
                metrics = dist_utils.reduce_mean({f"train/{k}": v / n for k, v in sums.items()})
                elapsed = time.perf_counter() - t0
                metrics["lr"] = lr_at(epoch)
                metrics["img_per_s"] = seen * info.world_size / max(elapsed, 1e-9)
                last_epoch = epoch + 1 == trainer.max_epochs
                if (
                    parts.validate
                    and trainer.val_every
                    and ((epoch + 1) % trainer.val_every == 0 or last_epoch)
                ):
                    model.eval()
                    with torch.no_grad():
                        metrics.update(parts.validate(model, ctx))
                improved = False
                value = metrics.get(parts.best_metric)
                if value is not None and math.isfinite(value) and (best is None or value > best):
                    best, improved = value, True
                if main:
                    save_checkpoint(ckpt_dir / "last.pt", checkpoint_state(epoch + 1, metrics))
                    if improved:
                        save_checkpoint(ckpt_dir / "best.pt", checkpoint_state(epoch + 1, metrics))
                    assert files is not None
                    validated = any(k not in ("lr", "img_per_s") and not k.startswith("train/")
                                    for k in metrics)  # fmt: skip
                    plot = validated or last_epoch or (epoch + 1) % 10 == 0
                    files.add_epoch(epoch + 1, metrics, plot=plot)
                    tracker.log_metrics(metrics, step)
                    print(_summary_line(epoch, trainer.max_epochs, metrics, elapsed, improved))
                dist_utils.barrier()
            else:
                epoch = trainer.max_epochs
    except BaseException:
        tracker.close("FAILED")
        raise
    if main:
        for name in ("epoch_metrics.png", "epoch_metrics.html", "metrics.csv"):
            if (run_dir / name).exists():
                tracker.log_artifact(run_dir / name)
    tracker.close(status)
    done = epoch if status == "KILLED" else trainer.max_epochs
    return FitResult(run_dir, done, best, metrics, status)


def _progress(enabled: bool, total: int, epoch: int, trainer: Any) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=f"epoch {epoch + 1}/{trainer.max_epochs}", leave=False,
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


def _log_sample(fn: Callable, batch: Any, run_dir: Path, tracker: NullTracker, cfg: Any) -> None:
    if not cfg.tracking.log_images:
        return
    try:
        import cv2

        image = fn(batch)
        path = run_dir / "train_sample.jpg"
        cv2.imwrite(str(path), image[:, :, ::-1])
        tracker.log_artifact(path)
    except Exception as e:  # a picture is never worth a failed run
        log.warning("could not write the training sample image: %s", e)
