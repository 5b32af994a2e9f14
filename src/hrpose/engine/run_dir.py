"""The run folder: ``<results_dir>/<experiment_name>/<run_name>/`` and what the loop writes there
besides checkpoints and metric files: config.yaml, the training sample and validation pictures.

Only rank 0 calls these. A picture is never worth a failed run: drawing errors become warnings.
"""

from __future__ import annotations

import logging
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


def new_run_dir(setup: SetupSettings) -> Path:
    """A new run's folder (not created yet); one that holds a run already is an error."""
    name = setup.run_name or datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(setup.results_dir) / setup.experiment_name / name
    if (run_dir / "checkpoints" / "last.pt").exists():
        raise FileExistsError(
            f"{run_dir} already holds a run: resume it with "
            f"--setup.ckpt_path={run_dir}/checkpoints/last.pt or pick another --setup.run_name"
        )
    return run_dir


def run_dir_of(ckpt_path: str | Path) -> Path:
    """The run folder of ``.../<run>/checkpoints/last.pt``; resumed runs write there again."""
    path = Path(ckpt_path).resolve()
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def open_run_folder(run_dir: Path, config: Mapping[str, Any], tracker: NullTracker) -> None:
    """Create the folder, write config.yaml, and log it and the parameters to the tracker."""
    run_dir.mkdir(parents=True, exist_ok=True)
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
