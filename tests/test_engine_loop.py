"""The shared training loop on a toy task: exact resume, signals save, NaN stops, best by metric."""

from __future__ import annotations

import dataclasses
import io
import os
import signal

import pytest
import torch
from torch import nn

from hrpose.cli.train import fit_settings
from hrpose.config.load import load_config
from hrpose.config.schema import ClassifierTrainConfig
from hrpose.data.loaders import build_loader
from hrpose.engine.checkpoint import load_checkpoint
from hrpose.engine.loop import StepOutput, TaskParts, TrainingStopped, fit
from hrpose.engine.settings import FitSettings


def _config(tmp_path, *extra: str) -> FitSettings:
    cfg = load_config(
        ClassifierTrainConfig,
        overrides=[
            f"--setup.results_dir={tmp_path}",
            "--setup.run_name=toy",
            "--trainer.max_epochs=4",
            "--trainer.progress=False",
            "--tracking.mlflow=False",
            "--optimizer.lr=0.1",
            "--scheduler.milestones=[2]",
            *extra,
        ],
    )
    return fit_settings(cfg)


def _builder(
    nan_at: int | None = None,
    kill_at: int | None = None,
    log: list | None = None,
    first_weight: list | None = None,
):
    def build(device, info):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(64, 4, generator=g), torch.randint(0, 3, (64,), generator=g)
        data = torch.utils.data.TensorDataset(x, y)
        loader = build_loader(data, 16, shuffle=True, seed=3)
        calls = {"n": 0}

        def step(m, batch, ctx):
            calls["n"] += 1
            if first_weight is not None and calls["n"] == 1:
                first_weight.append(m[0].weight.detach().clone())  # what training starts from
            if kill_at is not None and calls["n"] == kill_at:
                os.kill(os.getpid(), signal.SIGTERM)
            xb, yb = ctx.to_device(batch)
            loss = nn.functional.cross_entropy(m(xb), yb)
            if nan_at is not None and calls["n"] >= nan_at:
                loss = loss * float("nan")
            if log is not None:
                log.append(round(float(loss.detach()), 6))
            return StepOutput(loss, {"ce": loss.detach()}, len(xb))

        def validate(m, ctx):
            with torch.no_grad():
                acc = (m(x).argmax(1) == y).float().mean()
            return {"top1": float(acc) * 100}

        return TaskParts(model, loader, step, validate, "top1")

    return build


def test_resume_is_exact(tmp_path) -> None:
    straight: list[float] = []
    res = fit(_config(tmp_path / "a"), _builder(log=straight), "classifier")
    assert res.epochs_done == 4 and res.status == "FINISHED"
    run = tmp_path / "a" / "classifier" / "toy"
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "metrics.csv").is_file()
    assert (run / "epoch_metrics.png").is_file() and (run / "config.yaml").is_file()
    assert len((run / "metrics.csv").read_text().splitlines()) == 5

    first: list[float] = []
    fit(_config(tmp_path / "b", "--trainer.max_epochs=2"), _builder(log=first), "classifier")
    last = tmp_path / "b" / "classifier" / "toy" / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["epoch"] == 2
    resumed: list[float] = []
    res = fit(
        _config(tmp_path / "b", f"--setup.ckpt_path={last}"), _builder(log=resumed), "classifier"
    )
    assert res.epochs_done == 4
    assert first + resumed == straight  # same batches, same LR (milestone at 2), same losses
    state = load_checkpoint(last)
    assert state["epoch"] == 4 and state["step"] == 16
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.01)


def test_sigterm_mid_epoch_resumes_at_the_next_batch(tmp_path) -> None:
    """SIGTERM during epoch 2 saves a mid-epoch last.pt; the resumed run continues at the next
    batch, and together they give the uninterrupted run's losses and epoch metrics."""
    straight: list[float] = []
    fit(_config(tmp_path / "a"), _builder(log=straight), "classifier")
    killed: list[float] = []
    res = fit(_config(tmp_path / "b"), _builder(kill_at=6, log=killed), "classifier")
    assert res.status == "KILLED" and len(killed) == 6
    last = tmp_path / "b" / "classifier" / "toy" / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    assert (state["epoch"], state["epoch_batches"], state["step"]) == (1, 2, 6)
    resumed: list[float] = []
    cfg = _config(tmp_path / "b", f"--setup.ckpt_path={last}")
    res = fit(cfg, _builder(log=resumed), "classifier")
    assert res.status == "FINISHED" and load_checkpoint(last)["epoch"] == 4
    assert len(straight) == 16 and killed + resumed == straight
    a = (tmp_path / "a" / "classifier" / "toy" / "metrics.csv").read_text().splitlines()
    b = (tmp_path / "b" / "classifier" / "toy" / "metrics.csv").read_text().splitlines()
    loss = a[0].split(",").index("train/loss")
    assert [r.split(",")[loss] for r in a] == [r.split(",")[loss] for r in b]


def test_nan_loss_stops_with_message(tmp_path) -> None:
    with pytest.raises(TrainingStopped, match="non-finite loss.*optimizer.lr"):
        fit(_config(tmp_path), _builder(nan_at=6), "classifier")
    last = tmp_path / "classifier" / "toy" / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["epoch"] == 1


def test_existing_run_is_not_overwritten(tmp_path) -> None:
    fit(_config(tmp_path, "--trainer.max_epochs=1"), _builder(), "classifier")
    with pytest.raises(FileExistsError, match="ckpt_path"):
        fit(_config(tmp_path, "--trainer.max_epochs=1"), _builder(), "classifier")


def test_mlflow_local_store(tmp_path) -> None:
    from mlflow.tracking import MlflowClient

    os.environ.pop("MLFLOW_TRACKING_URI", None)
    cfg = _config(tmp_path, "--trainer.max_epochs=2", "--tracking.mlflow=True",
                  "--tracking.system_metrics=False")  # fmt: skip
    fit(cfg, _builder(), "classifier")
    client = MlflowClient(f"sqlite:///{tmp_path.resolve()}/mlflow.db")
    exp = client.get_experiment_by_name("classifier")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.params["optimizer.name"] == "sgd"
    assert "top1" in run.data.metrics and run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert len(history) == 2


def test_progress_in_a_log_is_one_line_per_epoch(tmp_path, capfd) -> None:
    """With stderr not a terminal (a log file), progress bars print no carriage-return redraws:
    the output is the run line and one summary line per epoch (epoch, loss, img/s, time)."""
    fit(_config(tmp_path, "--trainer.progress=True"), _builder(), "classifier")
    said = capfd.readouterr()
    text = said.out + said.err
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) <= 4 + 2, lines
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 4 and all("loss" in e and "img/s" in e for e in epochs)
    assert epochs[-1].startswith("epoch 4/4") and epochs[-1].rstrip().endswith(" s")


def test_pretrained_weights_by_url_or_registered_name(tmp_path, monkeypatch, capsys) -> None:
    """setup.pretrained_ckpt_path takes what --weights takes: an http(s) URL (downloaded once
    into $HRPOSE_CACHE, here from a 127.0.0.1 server) or a registered name."""
    from hrpose import hub
    from local_http import LocalServer

    monkeypatch.setenv("HRPOSE_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(7)
    donor = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    buf = io.BytesIO()
    torch.save(donor.state_dict(), buf)
    server = LocalServer()
    try:
        server.handler.files["/w/toy.pth"] = buf.getvalue()
        url = server.url + "/w/toy.pth"
        entry = next(iter(hub.REGISTRY.values()))
        monkeypatch.setitem(
            hub.REGISTRY, "toy-w8", dataclasses.replace(entry, name="toy-w8", url=url, sha256=None)
        )
        for i, weights in enumerate([url, "toy-w8"]):
            first: list = []
            extra = ("--trainer.max_epochs=1", f"--setup.pretrained_ckpt_path={weights}")
            fit(_config(tmp_path / str(i), *extra), _builder(first_weight=first), "classifier")
            assert torch.equal(first[0], donor[0].weight)
        out = capsys.readouterr().out
        assert f"pretrained weights {url}: loaded 4 tensors" in out
        assert "pretrained weights toy-w8: loaded 4 tensors" in out
        assert [p for p, _ in server.handler.log] == ["/w/toy.pth"]  # the name used the cache
        assert hub.cached_path(url).is_file()
    finally:
        server.stop()
