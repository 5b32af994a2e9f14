"""Experiment tracking: MLflow (local SQLite store, no server) plus the run folder's own files.

Only rank 0 builds a real tracker; other ranks get :class:`NullTracker`. Every metric goes both to
MLflow (when enabled) and to ``metrics.csv`` / ``epoch_metrics.png`` / ``epoch_metrics.html`` in
the run folder, so nothing depends on MLflow being there. MLflow sits behind
:class:`RetryingTracker`: a locked, full or unwritable store is logged and retried, never fatal.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hrpose.engine.settings import SetupSettings, TrackingSettings

log = logging.getLogger(__name__)


def default_tracking_uri(results_dir: str | Path) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else a SQLite file ``<results_dir>/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    path = Path(results_dir).resolve() / "mlflow.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{'a.b': v}`` (lists kept as values): a config as MLflow params."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class NullTracker:
    """Accepts every call and records nothing (non-zero ranks, tracking off, tests)."""

    run_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def log_artifact(self, path: str | Path, subdir: str | None = None) -> None:
        pass

    def close(self, status: str = "FINISHED") -> None:
        pass


class MlflowTracker(NullTracker):
    """One MLflow run; ``run_id`` given = continue that run (resume)."""

    def __init__(
        self,
        uri: str,
        experiment: str,
        run_name: str,
        run_id: str | None = None,
        artifact_root: Path | None = None,
        system_metrics: bool = True,
    ) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(uri)
        self.uri = uri
        if run_id is None:
            exp = self.client.get_experiment_by_name(experiment)
            if exp is None:
                location = None
                if artifact_root is not None and uri.startswith("sqlite:"):
                    # Keep artifacts beside the store instead of ./mlruns of the current folder.
                    location = (artifact_root / experiment).resolve().as_uri()
                exp_id = self.client.create_experiment(experiment, artifact_location=location)
            else:
                exp_id = exp.experiment_id
            run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = run_id
        self._monitor = None
        if system_metrics:
            try:
                from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

                self._monitor = SystemMetricsMonitor(
                    run_id, sampling_interval=10, resume_logging=True, tracking_uri=uri
                )
                self._monitor.start()
            except Exception as e:  # system metrics are a nicety; never fail a run on them
                log.warning("MLflow system metrics disabled: %s", e)
                self._monitor = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params
        items = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in existing]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k.replace("@", "_"), float(v), now, step)
            for k, v in metrics.items()
            if v is not None and math.isfinite(float(v))
        ]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def log_artifact(self, path: str | Path, subdir: str | None = None) -> None:
        try:
            self.client.log_artifact(self.run_id, str(path), subdir)
        except Exception as e:
            log.warning("could not log artifact %s to MLflow: %s", path, e)

    def close(self, status: str = "FINISHED") -> None:
        if self._monitor is not None:
            try:
                self._monitor.finish()
            except Exception as e:
                log.warning("stopping system metrics: %s", e)
        self.client.set_terminated(self.run_id, status=status)


class RunFiles:
    """Epoch metrics as ``metrics.csv`` (one row per epoch) and plots in the run folder."""

    def __init__(self, run_dir: Path, resume_epoch: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.csv = self.run_dir / "metrics.csv"
        self.rows: list[dict[str, float]] = []
        if self.csv.is_file() and resume_epoch is not None:
            with self.csv.open() as f:
                for row in csv.DictReader(f):
                    parsed = {k: float(v) for k, v in row.items() if v not in ("", None)}
                    # Drop rows of epochs that the resumed run will do again.
                    if parsed.get("epoch", 0) <= resume_epoch:
                        self.rows.append(parsed)

    def add_epoch(self, epoch: int, metrics: Mapping[str, float], plot: bool = True) -> None:
        """Record epoch ``epoch`` (1-based), rewrite the csv and (if ``plot``) the plots."""
        self.rows = [r for r in self.rows if r.get("epoch") != epoch]
        self.rows.append({"epoch": float(epoch), **{k: float(v) for k, v in metrics.items()}})
        keys = ["epoch"] + sorted({k for r in self.rows for k in r} - {"epoch"})
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.csv.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            for r in self.rows:
                writer.writerow({k: (int(v) if k == "epoch" else v) for k, v in r.items()})
        os.replace(tmp, self.csv)
        if plot:
            self.plot()

    def plot(self) -> list[Path]:
        """``epoch_metrics.png`` (one panel per metric) and a self-contained ``.html``."""
        # A Figure on its own Agg canvas, no pyplot: the caller's backend is left alone
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        names = sorted({k for r in self.rows for k in r} - {"epoch"})
        if not names:
            return []
        cols = min(3, len(names))
        nrows = math.ceil(len(names) / cols)
        fig = Figure(figsize=(4 * cols, 2.8 * nrows))
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, cols, squeeze=False)
        for ax, name in zip(axes.flat, names, strict=False):
            pts = [(r["epoch"], r[name]) for r in self.rows if name in r]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(names) :]:
            ax.axis("off")
        fig.tight_layout()
        png = self.run_dir / "epoch_metrics.png"
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        png.write_bytes(buf.getvalue())
        table = "".join(
            "<tr>"
            + "".join(f"<td>{r.get(k, float('nan')):.5g}</td>" for k, _ in [("epoch", 0)])
            + "".join(f"<td>{r[n]:.5g}</td>" if n in r else "<td></td>" for n in names)
            + "</tr>"
            for r in self.rows
        )
        head = "<tr><th>epoch</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names)
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>epoch metrics</title>"
            "<style>td,th{padding:2px 8px;text-align:right;font-family:monospace}</style>"
            "</head><body><h1>Epoch metrics</h1>"
            f"<img src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}'>"
            f"<table>{head}</tr>{table}</table></body></html>"
        )
        page_path = self.run_dir / "epoch_metrics.html"
        page_path.write_text(page)
        return [png, page_path]


class RetryingTracker(NullTracker):
    """A tracker whose failures are logged and retried, never raised: calls wait in a queue
    (the newest ``max_pending``) until the tracker, built by ``factory`` on first success,
    takes them. After a failure nothing is tried for ``retry_s`` seconds, so a dead store
    costs the training steps nothing."""

    def __init__(self, factory: Callable[[], NullTracker], retry_s: float = 60.0,
                 max_pending: int = 10_000) -> None:  # fmt: skip
        self.factory, self.inner, self.retry_s = factory, None, retry_s
        self.pending: deque[tuple[str, tuple]] = deque(maxlen=max_pending)
        self.next_try, self.failures = 0.0, 0
        self._flush()

    @property
    def run_id(self) -> str | None:  # type: ignore[override]
        return self.inner.run_id if self.inner is not None else None

    def _call(self, name: str, *args: Any) -> None:
        self.pending.append((name, args))
        self._flush()

    def _flush(self, force: bool = False) -> None:
        if not force and time.monotonic() < self.next_try:
            return
        try:
            if self.inner is None:
                self.inner = self.factory()
            while self.pending:
                name, args = self.pending[0]
                getattr(self.inner, name)(*args)
                self.pending.popleft()
        except Exception as e:
            self.failures += 1
            self.next_try = time.monotonic() + self.retry_s
            log.warning("MLflow failed (%s: %s); %d calls wait, next try in %.0f s; the run "
                        "goes on and metrics.csv has every epoch", type(e).__name__, e,
                        len(self.pending), self.retry_s)  # fmt: skip
            return
        if self.failures:
            log.warning("MLflow works again after %d failures", self.failures)
            self.failures = 0

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._call("log_params", dict(params))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._call("log_metrics", dict(metrics), step)

    def log_artifact(self, path: str | Path, subdir: str | None = None) -> None:
        self._call("log_artifact", path, subdir)

    def close(self, status: str = "FINISHED") -> None:
        self._flush(force=True)
        if self.pending:
            log.warning("MLflow never took %d calls of this run; metrics.csv has the epochs",
                        len(self.pending))  # fmt: skip
        if self.inner is not None:
            try:
                self.inner.close(status)
            except Exception as e:
                log.warning("could not close the MLflow run: %s", e)


def make_tracker(
    tracking: TrackingSettings, setup: SetupSettings, run_dir: Path, run_id: str | None = None
) -> NullTracker:
    """Rank 0's tracker for the run in ``run_dir``: MLflow as the tracking section says (a given
    ``run_id`` continues that run) behind a :class:`RetryingTracker`, else a NullTracker."""
    if not tracking.mlflow:
        return NullTracker()

    def connect() -> NullTracker:
        uri = tracking.uri or default_tracking_uri(setup.results_dir)
        return MlflowTracker(
            uri,
            setup.experiment_name,
            run_dir.name,
            run_id=run_id,
            artifact_root=Path(setup.results_dir) / "mlartifacts",
            system_metrics=tracking.system_metrics,
        )

    return RetryingTracker(connect)
