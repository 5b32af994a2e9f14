"""Bad samples: truncated JPEGs are detected, loaders replace (training) or drop (validation)
unreadable samples as a pure function of (seed, epoch, index), and the counter stops a run."""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hrpose.data.coco import DatasetError, UnreadableSample
from hrpose.data.images import ImageReadError, jpeg_truncated, read_image, read_image_pil
from hrpose.data.loaders import SampleBatch, build_loader, replacement_index
from hrpose.engine.bad_samples import BadSampleCounter, TooManyBadSamples


def _jpeg(size=(64, 48), **kw) -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", **kw)
    return buf.getvalue()


def test_truncated_jpeg_is_detected(coco_mini, tmp_path) -> None:
    real = (coco_mini / "images" / "000000000785.jpg").read_bytes()
    as_array = lambda b: np.frombuffer(b, np.uint8)  # noqa: E731
    assert not jpeg_truncated(as_array(real))
    for cut in (0.3, 0.9, 0.999):
        assert jpeg_truncated(as_array(real[: int(len(real) * cut)])), cut
    # data appended after the end marker (motion photos, camera trailers) is not truncation
    assert not jpeg_truncated(as_array(real + b"\x00" * 100 + b"ftypmp42" * 50))
    # an EXIF thumbnail holds its own end marker: inside a header segment, so it is skipped
    thumb = _jpeg((16, 12))
    exif = Image.Exif()
    exif[0x0112] = 1
    with_thumb = _jpeg(exif=exif.tobytes())
    app1 = b"Exif\x00\x00" + b"\x00" * 8 + thumb  # a segment that contains 0xFFD9
    segment = b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1
    spliced = with_thumb[:2] + segment + with_thumb[2:]
    assert not jpeg_truncated(as_array(spliced))
    assert jpeg_truncated(as_array(spliced[: len(spliced) - 300]))
    assert not jpeg_truncated(as_array(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10))  # not a JPEG
    # both readers refuse it, whatever their decoder would do
    (tmp_path / "cut.jpg").write_bytes(real[: len(real) // 2])
    with pytest.raises(ImageReadError, match="cut.jpg.*(truncated|not a readable)"):
        read_image(tmp_path / "cut.jpg")
    (tmp_path / "tail.jpg").write_bytes(real[:-2])  # only the end marker missing
    with pytest.raises(ImageReadError, match="tail.jpg"):
        read_image(tmp_path / "tail.jpg")
    with pytest.raises(ImageReadError, match="tail.jpg: truncated JPEG"):
        read_image_pil(tmp_path / "tail.jpg")
    assert read_image(coco_mini / "images" / "000000000785.jpg").shape[2] == 3


class Files:
    """Samples 0..n-1 are their own index as a tensor; those in ``bad`` raise UnreadableSample."""

    def __init__(self, n: int, bad: set[int]) -> None:
        self.n, self.bad = n, bad

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        if i in self.bad:
            raise UnreadableSample(f"img{i}.jpg: truncated", f"img{i}.jpg")
        return torch.tensor([i, int(torch.randint(0, 1000, ()))])  # index, an augmentation draw


def _epoch(loader, epoch: int, start: int = 0) -> list[SampleBatch]:
    loader.sampler.set_epoch(epoch, start)
    return list(loader)


def test_replacement_is_pure_and_resume_exact() -> None:
    data = Files(20, {3, 11})
    loader = build_loader(data, 4, shuffle=True, seed=5, bad_samples="replace")
    batches = _epoch(loader, 1)
    assert batches and all(isinstance(b, SampleBatch) for b in batches)
    skipped = [f for b in batches for f in b.skipped]
    assert sorted(skipped) == ["img11.jpg", "img3.jpg"]  # each met once per epoch
    values = torch.cat([b.data for b in batches])
    assert len(values) == 20 and not set(values[:, 0].tolist()) & {3, 11}
    # the replacement of a bad index is replacement_index(seed, epoch, index, 0)
    order = loader.sampler.order().tolist()
    slot = order.index(3)
    assert int(values[slot, 0]) == replacement_index(5, 1, 3, 0, 20)
    # ... and it gets the bad slot's augmentation draw: unchanged by where it is read from
    plain = build_loader(Files(20, set()), 4, shuffle=True, seed=5)
    plain_values = torch.cat(_epoch(plain, 1))
    good = [i for i, v in enumerate(order) if v not in (3, 11)]
    assert torch.equal(values[good], plain_values[good])
    assert int(values[slot, 1]) == int(plain_values[slot, 1])
    # a resume at batch 2 yields exactly the rest; workers change nothing
    again = _epoch(loader, 1, start=8)
    assert all(torch.equal(a.data, b.data) for a, b in zip(again, batches[2:], strict=True))
    workers = build_loader(data, 4, shuffle=True, seed=5, num_workers=2, bad_samples="replace")
    assert all(
        torch.equal(a.data, b.data) and a.skipped == b.skipped
        for a, b in zip(_epoch(workers, 1), batches, strict=True)
    )
    assert torch.equal(torch.cat([b.data for b in _epoch(loader, 1)]), values)  # same again


def test_drop_for_validation_and_a_dead_dataset() -> None:
    data = Files(6, {0, 1, 4})
    batches = list(build_loader(data, 2, shuffle=False, pad=False, bad_samples="drop"))
    assert [b.skipped for b in batches] == [("img0.jpg", "img1.jpg"), (), ("img4.jpg",)]
    assert batches[0].data is None  # the whole batch unreadable
    assert batches[1].data[:, 0].tolist() == [2, 3] and batches[2].data[:, 0].tolist() == [5]
    with pytest.raises(UnreadableSample, match="img0.jpg"):  # the default still raises
        next(iter(build_loader(data, 2, shuffle=False)))
    dead = build_loader(Files(5, {0, 1, 2, 3, 4}), 2, bad_samples="replace")
    with pytest.raises(DatasetError, match="replacements are all unreadable.*img"):
        next(iter(dead))
    with pytest.raises(ValueError, match="choose from"):
        build_loader(data, 2, bad_samples="skip")


def test_counter_names_each_file_once_and_stops(caplog) -> None:
    counter = BadSampleCounter(num_files=1000, max_fraction=0.002)  # 2 files allowed
    with caplog.at_level(logging.WARNING, logger="hrpose.engine.bad_samples"):
        assert counter.update(["a.jpg"]) == ["a.jpg"]
        assert counter.update(["a.jpg", "b.jpg", "a.jpg"]) == ["b.jpg"]
        assert counter.update([]) == []
    named = [r.getMessage() for r in caplog.records]
    assert len(named) == 2 and "a.jpg" in named[0] and "b.jpg" in named[1]
    assert counter.skips == 4  # samples replaced; distinct files: 2
    with pytest.raises(TooManyBadSamples) as err:
        counter.update(["c.jpg"])
    msg = str(err.value)
    assert "3 unreadable" in msg and "a.jpg, b.jpg, c.jpg" in msg and "max_bad_fraction" in msg
    zero = BadSampleCounter(num_files=118_287, max_fraction=0.0)
    with pytest.raises(TooManyBadSamples, match="x.jpg"):
        zero.update(["x.jpg"])
    many = BadSampleCounter(num_files=10, max_fraction=0.0)
    with pytest.raises(TooManyBadSamples, match="and 5 more"):
        many.update([f"{i}.jpg" for i in range(25)])
    with pytest.raises(ValueError, match="fraction"):
        BadSampleCounter(10, 1.5)


def broken_coco_mini(coco_mini: Path, dest: Path) -> tuple[Path, Path]:
    """A copy of coco-mini with one truncated JPEG and one missing file; their paths."""
    shutil.copytree(coco_mini, dest)
    names = sorted(p.name for p in (dest / "images").iterdir())
    truncated, missing = dest / "images" / names[0], dest / "images" / names[1]
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    missing.unlink()
    return truncated, missing


CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pose" / "coco-mini.yaml"


def _train_args(root: Path, results: Path, *extra: str) -> list[str]:
    return ["train", "pose", "--config", str(CONFIG), f"--dataloader.train_ds.root={root}",
            f"--dataloader.val_ds.root={root}", f"--setup.results_dir={results}",
            "--setup.run_name=r", "--model.width=8", "--dataloader.batch_size=2",
            "--dataloader.shuffle=True", "--data.input_size=64", "--inference.input_size=64",
            "--data.repeat=2", "--trainer.max_epochs=1", "--trainer.val_every=1",
            "--trainer.limit_val_batches=4", "--trainer.progress=False",
            "--tracking.mlflow=False", "--tracking.log_images=False", *extra]  # fmt: skip


def test_training_skips_names_and_stops_on_bad_files(coco_mini, tmp_path, caplog, capsys):
    """coco-mini with a truncated JPEG and a missing file: training finishes, naming both once,
    and validation leaves them out (``bad_images``); with the fraction at 0 it stops."""
    from hrpose.cli import main

    torch.set_num_threads(1)
    truncated, missing = broken_coco_mini(coco_mini, tmp_path / "broken")
    args = _train_args(tmp_path / "broken", tmp_path / "runs")
    with caplog.at_level(logging.WARNING):
        assert main([*args, "--data.max_bad_fraction=0.5"]) == 0  # 2 of 4 files allowed
    logged = [r.getMessage() for r in caplog.records]
    for path in (truncated, missing):
        assert sum(str(path) in m and "training set" in m for m in logged) == 1, path
        assert sum(str(path) in m and "validation" in m for m in logged) == 1, path
    csv = (tmp_path / "runs" / "coco-mini" / "r" / "metrics.csv").read_text().splitlines()
    header, row = csv[0].split(","), csv[1].split(",")
    assert float(row[header.index("bad_images")]) == 2.0 and "AP" in header
    capsys.readouterr()
    args = _train_args(tmp_path / "broken", tmp_path / "runs2")
    assert main([*args, "--data.max_bad_fraction=0"]) == 1
    err = capsys.readouterr().err
    assert "max_bad_fraction=0" in err and ("truncated" in err or str(truncated) in err)
    assert str(truncated) in err or str(missing) in err


def test_counts_agree_across_ranks(tmp_path) -> None:
    """Two gloo ranks: the files each met are known to both, counted once, and both stop at
    the step where one rank alone meets the file over the limit (no rank left waiting)."""
    import json
    import os
    import subprocess
    import sys

    script = Path(__file__).with_name("ddp_bad_samples.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           str(script)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(x[7:]) for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert sorted(r["rank"] for r in results) == [0, 1]
    for r in results:
        assert r["files"] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"] and r["stopped"] == 4, r
        assert "4 unreadable" in r["message"] and "d.jpg" in r["message"]


def test_resume_with_bad_files_is_exact(coco_mini, tmp_path) -> None:
    """On the broken copy, a run stopped by SIGTERM after step 3 and resumed (with 2 workers)
    gives the straight run's per-step losses: the replacements do not depend on the history."""
    import os
    import signal

    from hrpose.cli.train import fit_settings, pose_task
    from hrpose.config import PoseTrainConfig
    from hrpose.config.load import load_config
    from hrpose.engine.loop import fit

    torch.set_num_threads(1)
    broken_coco_mini(coco_mini, tmp_path / "broken")

    def run(results: Path, losses: list[float], *extra: str, kill_at: int | None = None):
        split = [f"--dataloader.{s}.root={tmp_path / 'broken'}" for s in ("train_ds", "val_ds")]
        cfg = load_config(PoseTrainConfig, CONFIG, [
            *split, f"--setup.results_dir={results}", "--setup.run_name=r", "--setup.seed=3",
            "--model.width=8", "--data.input_size=64", "--data.augment=True", "--data.repeat=2",
            "--dataloader.batch_size=2", "--dataloader.shuffle=True", "--trainer.max_epochs=1",
            "--trainer.val_every=0", "--trainer.progress=False", "--tracking.mlflow=False",
            "--tracking.log_images=False", "--data.max_bad_fraction=0.5", *extra,
        ])  # fmt: skip

        def build(device, info):
            parts = pose_task(cfg, device, info)
            inner = parts.train_step

            def step(m, batch, ctx):
                out = inner(m, batch, ctx)
                losses.append(float(out.loss.detach()))
                if kill_at is not None and len(losses) == kill_at:
                    os.kill(os.getpid(), signal.SIGTERM)
                return out

            parts.train_step = step
            return parts

        return fit(fit_settings(cfg), build, "pose")

    straight: list[float] = []
    assert run(tmp_path / "a", straight).status == "FINISHED" and len(straight) == 4
    first: list[float] = []
    assert run(tmp_path / "b", first, kill_at=3).status == "KILLED"
    last = tmp_path / "b" / "coco-mini" / "r" / "checkpoints" / "last.pt"
    rest: list[float] = []
    resumed = run(tmp_path / "b", rest, f"--setup.ckpt_path={last}",
                  "--dataloader.num_workers=2")  # fmt: skip
    assert resumed.status == "FINISHED" and first + rest == straight


def test_classifier_task_counts_bad_training_and_validation_images(tmp_path, caplog) -> None:
    """ImageNet layout with a truncated training JPEG and a missing-after-listing validation
    one: training steps replace and count the first, validation leaves the second out."""
    import cv2

    from hrpose.cli.train import classifier_task
    from hrpose.config import ClassifierTrainConfig
    from hrpose.config.load import load_config
    from hrpose.engine.distributed import DistInfo
    from hrpose.engine.loop import StepContext, evaluate

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 3)):
        for wnid in ("n0", "n1"):
            (tmp_path / split / wnid).mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 255, (40, 40, 3)).astype(np.uint8)
                cv2.imwrite(str(tmp_path / split / wnid / f"{i}.JPEG"), img)
    cut = tmp_path / "train" / "n1" / "2.JPEG"
    cut.write_bytes(cut.read_bytes()[:-200])
    args = [f"--dataloader.{s}.root={tmp_path}" for s in ("train_ds", "val_ds")]
    cfg = load_config(ClassifierTrainConfig, None, [
        *args, "--model.num_classes=2", "--model.width=8", "--data.input_size=32",
        "--data.resize_size=36", "--dataloader.batch_size=4", "--dataloader.num_workers=0",
        "--data.max_bad_fraction=0.2",
    ])  # fmt: skip
    cpu, ctx = torch.device("cpu"), StepContext(torch.device("cpu"))
    parts = classifier_task(cfg, cpu, DistInfo())
    gone = tmp_path / "val" / "n0" / "1.JPEG"
    gone.unlink()  # listed by the folder scan, then gone (a lost mount, a cleanup)
    with caplog.at_level(logging.WARNING):
        batches = list(parts.train_loader)
        assert [f for b in batches for f in b.skipped] == [str(cut)]
        for batch in batches:
            assert len(parts.train_step(parts.model, batch, ctx).loss.shape) == 0
        metrics = evaluate(parts.validate, parts.model, ctx)
    assert metrics["bad_images"] == 1.0 and 0.0 <= metrics["top1"] <= 100.0
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert str(cut) in logged and str(gone) in logged
    cfg.data.max_bad_fraction = 0.0
    strict = classifier_task(cfg, cpu, DistInfo())
    with pytest.raises(TooManyBadSamples, match="2.JPEG"):
        for batch in strict.train_loader:
            strict.train_step(strict.model, batch, ctx)
