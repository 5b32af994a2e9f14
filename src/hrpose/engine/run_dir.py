"""The run folder: ``<results_dir>/<experiment_name>/<run_name>/`` and what the loop writes there
besides checkpoints and metric files: config.yaml, the training sample and validation pictures.

Only rank 0 calls these. A picture is never worth a failed run: drawing errors become warnings.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hrpose.engine.settings import SetupSettings
from hrpose.engine.tracking import NullTracker, flatten

log = logging.getLogger("hrpose.train")

# Files of the run folder logged to the tracker when the run ends.
RUN_FILES = ("epoch_metrics.png", "epoch_metrics.html", "metrics.csv")


# Written into a run folder opened under torchrun: the job id (TORCHELASTIC_RUN_ID, the same in
# every restart of the job), so a restart finds the folder even when it is named by a timestamp,
# and continues only a folder that this job opened.
ELASTIC_MARKER = "torchelastic_run_id"


def restart_count() -> int:
    """How often torchrun restarted this job's workers (0: the first attempt, or no torchrun)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def _elastic_job_id() -> str | None:
    job = os.environ.get("TORCHELASTIC_RUN_ID")
    return job if job and job != "none" else None  # plain torchrun without --rdzv-id: "none"


def opened_by_this_job(run_dir: Path) -> bool:
    """Whether this torchrun job opened ``run_dir`` in an earlier attempt (True when the job
    has no id to tell): a restart continues only its own folder, never another run's."""
    job = _elastic_job_id()
    marker = run_dir / ELASTIC_MARKER
    return job is None or (marker.is_file() and marker.read_text().strip() == job)


def holds_a_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` has checkpoints already."""
    ckpts = run_dir / "checkpoints"
    return ckpts.is_dir() and any(p.suffix == ".pt" for p in ckpts.iterdir())


def new_run_dir(setup: SetupSettings) -> Path:
    """A new run's folder (not created yet); one that holds a run already is an error."""
    name = setup.run_name or datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(setup.results_dir) / setup.experiment_name / name
    if holds_a_run(run_dir):
        raise FileExistsError(
            f"{run_dir} already holds a run: continue it with --setup.resume=auto (or "
            f"--setup.ckpt_path={run_dir}/checkpoints/last.pt) or pick another --setup.run_name"
        )
    restartable = os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") not in ("", "0")
    if setup.run_name is None and _elastic_job_id() is None and restartable:
        log.warning(
            "torchrun may restart this job but its run folder is named by a timestamp and the "
            "job has no --rdzv-id: pass --setup.run_name so a restart finds it"
        )
    return run_dir


def resumed_run_dir(setup: SetupSettings) -> Path | None:
    """The run folder ``setup.resume=auto`` continues: setup.run_name's; without a name, the
    folder this torchrun job opened in an earlier attempt, else a new one (no attempt got that
    far); None when there is no name and no job id to tell."""
    base = Path(setup.results_dir) / setup.experiment_name
    if setup.run_name:
        return base / setup.run_name
    job = _elastic_job_id()
    if job is None:
        return None
    made = sorted(d for d in base.glob(f"*/{ELASTIC_MARKER}") if d.read_text().strip() == job)
    return made[-1].parent if made else new_run_dir(setup)


def run_dir_of(ckpt_path: str | Path) -> Path:
    """The run folder of ``.../<run>/checkpoints/last.pt``; resumed runs write there again."""
    path = Path(ckpt_path).resolve()
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def open_run_folder(run_dir: Path, config: Mapping[str, Any], tracker: NullTracker) -> None:
    """Create the folder, write config.yaml, and log it and the parameters to the tracker."""
    run_dir.mkdir(parents=True, exist_ok=True)
    job = _elastic_job_id()
    if job is not None:
        (run_dir / ELASTIC_MARKER).write_text(job + "\n")
    config_file = run_dir / "config.yaml"
    config_file.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    tracker.log_params(flatten(config))
    tracker.log_artifact(config_file)


def log_run_files(run_dir: Path, tracker: NullTracker) -> None:
    """Hand the run folder's metric table and plots to the tracker (at the end of a run)."""
    for name in RUN_FILES:
        if (run_dir / name).exists():
            tracker.log_artifact(run_dir / name)


def _write_rgb(path: Path, image: np.ndarray) -> None:
    import cv2

    cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, ::-1]))


def save_train_sample(
    run_dir: Path, render: Callable[[], np.ndarray], tracker: NullTracker
) -> None:
    """``train_sample.jpg``: the HxWx3 uint8 RGB picture ``render`` draws of a training batch."""
    try:
        path = run_dir / "train_sample.jpg"
        _write_rgb(path, render())
        tracker.log_artifact(path)
    except Exception as e:  # a picture is never worth a failed run
        log.warning("could not write the training sample image: %s", e)


def save_val_pictures(
    run_dir: Path, epoch: int, render: Callable[[], dict[str, np.ndarray]],
    tracker: NullTracker,
) -> None:  # fmt: skip
    """``val_images/epoch_NNN_<name>.jpg`` for each RGB picture ``render`` draws, + artifacts."""
    try:
        pictures = render()
        folder = run_dir / "val_images"
        folder.mkdir(parents=True, exist_ok=True)
        for name, image in pictures.items():
            path = folder / f"epoch_{epoch:03d}_{name}.jpg"
            _write_rgb(path, image)
            tracker.log_artifact(path, "val_images")
    except Exception as e:  # a picture is never worth a failed run
        log.warning("could not write the validation pictures: %s", e)
