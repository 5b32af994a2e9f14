"""Eval and predict past one process: exact contiguous shards, torchrun ranks (gloo on CPU) that
print the one-process table, per-rank prediction logs merged on rank 0, a killed sharded run
resumed to the unbroken run's predictions, and the job's progress lines."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hrpose.evaluation.prediction_log import (
    LOG_NAME,
    PredictionLog,
    merge_logs,
    rank_log_name,
    read_logs,
)
from hrpose.progress import ProgressBar
from hrpose.sharding import shard, shard_owner

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_shards_are_contiguous_exact_and_balanced() -> None:
    for n in range(0, 12):
        items = list(range(n))
        for world in (1, 2, 3, 5):
            parts = [shard(items, r, world) for r in range(world)]
            assert [i for p in parts for i in p] == items  # rank order is the item order
            sizes = [len(p) for p in parts]
            assert max(sizes) - min(sizes) <= 1
    # a video weighs its frames: 100 frames on one rank, 3 + 4 + 2 + 90 on the other
    weights = [100, 3, 4, 2, 90]
    owner = shard_owner(weights, 2)
    assert owner.tolist() == [0, 1, 1, 1, 1] and np.all(np.diff(owner) >= 0)
    assert shard(list("abcde"), 1, 2, weights) == ["b", "c", "d", "e"]
    with pytest.raises(ValueError, match="weights must be >= 1"):
        shard_owner([1, 0], 2)
    with pytest.raises(ValueError, match="rank 2 is not in 0..1"):
        shard([1, 2], 2, 2)


def test_logs_keep_finished_images_and_videos_only(tmp_path) -> None:
    """A video counts once its end line is written; a cut line or a video cut short is
    dropped; several ranks' logs read together, the first finished copy winning."""
    a = PredictionLog(tmp_path / rank_log_name(0))
    a.add("x.jpg", [{"image_id": 1, "score": 0.5}])
    frames = [[{"frame": 0, "track_id": 1}], [{"frame": 1, "track_id": 1}]]
    for n, rows in enumerate(frames):
        a.add_frame("v.mp4", n, rows)
    a.finish_video("v.mp4", frames)
    a.add_frame("cut.mp4", 0, [{"frame": 0}])  # killed mid-video: no end line
    a.close()
    with open(a.path, "a") as f:
        f.write('{"file_name": "y.jp')  # a line a crash left half written
    b = PredictionLog(tmp_path / rank_log_name(1))
    b.add("x.jpg", [{"image_id": 1, "score": 0.9}])  # a second copy: the first wins
    b.add("z.jpg", [])
    b.close()
    done = read_logs([a.path, b.path])
    assert set(done.images) == {"x.jpg", "z.jpg"} and list(done.videos) == ["v.mp4"]
    assert done.images["x.jpg"][0]["score"] == 0.5 and "cut.mp4" not in done
    assert done.rows(["v.mp4", "x.jpg"]) == [*frames[0], *frames[1], done.images["x.jpg"][0]]
    merged = merge_logs(tmp_path)
    assert sorted(merged.names()) == ["v.mp4", "x.jpg", "z.jpg"]
    assert not list(tmp_path.glob("predictions.rank*.jsonl"))
    lines = (tmp_path / LOG_NAME).read_text().splitlines()
    assert len(lines) == 2 + 2 + 1  # two images, two frames, one end line: nothing twice


def test_progress_prints_a_line_per_chunk_off_a_terminal() -> None:
    stream = io.StringIO()
    bar = ProgressBar(50, "predicting", "img", summary=False, every=20, stream=stream)
    for _ in range(50):
        bar.update()
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("predicting: 20/50 img, ")
    assert "img/s, ETA " in lines[1] and "\r" not in stream.getvalue()


def test_list_file_with_paths_and_urls(shared_data, coco_mini, tmp_path, capsys) -> None:
    """@list.txt: a relative path and an http(s) URL (read in a DataLoader worker) give the
    same people as the file; a name given twice and a missing line are named."""
    from hrpose.cli import main
    from local_http import LocalServer

    image = sorted((coco_mini / "images").iterdir())[0]
    local = tmp_path / "local"
    local.mkdir()
    (local / "a.jpg").symlink_to(image)
    server = LocalServer()
    try:
        server.handler.files["/pics/b.jpg"] = image.read_bytes()
        listing = local / "list.txt"
        listing.write_text(f"# two copies of one image\na.jpg\n\n{server.url}/pics/b.jpg\n")
        out = tmp_path / "out"
        weights = shared_data / "weights" / "w8-coco-mini.pt"
        argv = ["predict", f"@{listing}", "--weights", str(weights), "--output", str(out),
                "--device", "cpu", "--workers", "1"]  # fmt: skip
        assert main(argv) == 0
    finally:
        server.stop()
    rows = json.loads((out / "predictions.json").read_text())
    by_name = {n: [r["keypoints"] for r in rows if r["file_name"] == n] for n in ("a.jpg", "b.jpg")}
    assert len(by_name["a.jpg"]) > 0 and by_name["a.jpg"] == by_name["b.jpg"]
    assert (out / "b_pose.jpg").is_file() and "2 image(s)" in capsys.readouterr().out
    listing.write_text(f"a.jpg\n{local / 'a.jpg'}\n")
    with pytest.raises(SystemExit, match="given twice \\(a.jpg\\)"):
        main(["predict", f"@{listing}", "--weights", "random"])
    listing.write_text("a.jpg\nnone.jpg\n")
    with pytest.raises(SystemExit, match="line 2: none.jpg: no such file"):
        main(["predict", f"@{listing}", "--weights", "random"])


class _Store:
    """The rendezvous store's add(), in one process."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    def add(self, key: str, n: int) -> int:
        self.values[key] = self.values.get(key, 0) + n
        return self.values[key]


def test_one_bar_on_rank_0_counts_every_rank() -> None:
    """Rank 1 reports through the store; rank 0's bar shows the job's count, its lines name
    the job's total, and rank 0 closes only once every rank is done."""
    from hrpose.cli.sharded import Job, JobProgress

    store, streams = _Store(), [io.StringIO(), io.StringIO()]
    ranks = [JobProgress(Job(r, 2, store=store), 40, "predicting", "img", stream=streams[r],
                         summary=True) for r in range(2)]  # fmt: skip
    for _ in range(25):
        ranks[1].update()
    ranks[1].finish()
    for _ in range(15):
        ranks[0].update()
    ranks[0].finish()
    assert ranks[0].bar.n == 40 and streams[1].getvalue() == ""
    lines = streams[0].getvalue().splitlines()
    assert lines[0].startswith("predicting: 26/40 img, ") and "ETA" in lines[0]  # rank 1's 25 + 1
    assert lines[-1].startswith("predicting: 40/40 img in ")  # 25 + 15, not rank 0's 15


def _hrpose(n: int) -> list[str]:
    """`python -m hrpose` in one plain process (n=0) or under torchrun with n ranks."""
    if not n:
        return [sys.executable, "-m", "hrpose"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={n}", "-m", "hrpose"]  # fmt: skip


def _eval(n: int, weights: Path, ann: Path, images: Path, out: Path, *extra: str) -> str:
    """stdout of `hrpose eval pose` in one plain process (n=0) or under torchrun with n ranks."""
    cmd = [*_hrpose(n), "eval", "pose", "--weights", str(weights), "--annotations", str(ann),
           "--images", str(images), "--output", str(out), "--device", "cpu", *extra]  # fmt: skip
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _table(stdout: str) -> list[str]:
    lines = [ln for ln in stdout.splitlines() if ln.startswith(" Average")]
    assert len(lines) >= 9
    return lines


@pytest.mark.slow
def test_eval_on_1_2_3_ranks_prints_the_one_process_table(shared_data, coco_mini, tmp_path):
    """3 images, which neither 2 nor 3 ranks divide: the stats equal bit for bit."""
    weights = shared_data / "weights" / "w8-coco-mini.pt"
    ann, images = coco_mini / "person_keypoints.json", coco_mini / "images"
    runs = {n: _eval(n, weights, ann, images, tmp_path / str(n), "--limit", "3") for n in (0, 2, 3)}
    protocols = {n: json.loads((tmp_path / str(n) / "protocol.json").read_text()) for n in runs}
    assert protocols[0]["stats"]["AP"] > 0.5 and protocols[0]["num_images"] == 3
    for n in (2, 3):
        assert _table(runs[n]) == _table(runs[0]) and f"over {n} ranks" in runs[n]
        assert protocols[n]["stats"] == protocols[0]["stats"]  # floats, bit for bit
        assert protocols[n]["world_size"] == n and protocols[n]["num_images"] == 3
        res = json.loads((tmp_path / str(n) / "keypoints_val2017_results.json").read_text())
        assert res == json.loads((tmp_path / "0" / "keypoints_val2017_results.json").read_text())


@pytest.mark.slow
def test_eval_on_2_ranks_all_of_coco_mini(shared_data, coco_mini, tmp_path):
    weights = shared_data / "weights" / "w8-coco-mini.pt"
    ann, images = coco_mini / "person_keypoints.json", coco_mini / "images"
    one = _eval(0, weights, ann, images, tmp_path / "1")
    two = _eval(2, weights, ann, images, tmp_path / "2")
    assert _table(two) == _table(one) and "AP 0.5801 over 4 images over 2 ranks" in two


@pytest.mark.slow
def test_eval_on_2_ranks_crowdpose_protocol(shared_data, coco_mini, tmp_path):
    """The CrowdPose protocol (every image has a crowdIndex: faster-coco-eval keypoints_crowd,
    easy / medium / hard) on coco-mini's people, which the W8 finds: the same table."""
    gt = json.loads((coco_mini / "person_keypoints.json").read_text())
    for image, index in zip(gt["images"], (0.1, 0.5, 0.9, 0.5), strict=True):
        image["crowdIndex"] = index
    ann = tmp_path / "crowd.json"
    ann.write_text(json.dumps(gt))
    weights, images = shared_data / "weights" / "w8-coco-mini.pt", coco_mini / "images"
    one = _eval(0, weights, ann, images, tmp_path / "1")
    two = _eval(2, weights, ann, images, tmp_path / "2")
    table = _table(one)
    assert any("type=  hard" in ln for ln in table) and not any("area=medium" in ln for ln in table)
    assert _table(two) == table
    record = json.loads((tmp_path / "2" / "protocol.json").read_text())
    assert record["evaluator"] == "faster-coco-eval keypoints_crowd" and record["stats"]["AP"] > 0.5


def _predict(n: int, out: Path, *args: str, **kw) -> subprocess.Popen:
    cmd = [*_hrpose(n), "predict", *args, "--output", str(out), "--device", "cpu"]
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)  # fmt: skip


def _finished(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    return out


def _key(row: dict) -> tuple:
    return (row["file_name"], row.get("frame", -1), row["score"])


@pytest.mark.slow
def test_sharded_predict_killed_and_resumed_matches_an_unbroken_run(shared_data, tmp_path):
    """@list.txt of 12 images and a video over 2 ranks, SIGTERM to the whole job once lines
    appear; --resume on 2 ranks finishes it: predictions.json equals one unbroken process's,
    and predictions.jsonl holds each image and the video once."""
    images = sorted((shared_data / "coco-mini" / "images").iterdir())
    images += sorted((shared_data / "examples").iterdir())
    video = shared_data / "video" / "street.mp4"
    listing = tmp_path / "list.txt"
    listing.write_text("# the job\n" + "\n".join(map(str, [*images, video])) + "\n")
    args = [f"@{listing}", "--weights", str(shared_data / "weights" / "w8-coco-mini.pt")]
    said = _finished(_predict(0, tmp_path / "full", *args))
    assert "12 image(s)" in said and "5 frames" in said
    full = json.loads((tmp_path / "full" / "predictions.json").read_text())
    assert len(full) > 12 and any("track_id" in r for r in full)

    out = tmp_path / "cut"
    job = _predict(2, out, *args, start_new_session=True)  # its own process group
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size for p in out.glob("predictions.rank*.jsonl")):
        assert job.poll() is None, job.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no prediction line within 120 s"
        time.sleep(0.02)
    os.killpg(job.pid, signal.SIGTERM)
    job.communicate(timeout=120)
    assert job.returncode != 0 and not (out / "predictions.json").exists()
    kept = read_logs(sorted(out.glob("predictions*.jsonl")))
    assert 1 <= len(kept) < 13  # killed mid-way, the finished items kept

    said = _finished(_predict(2, out, *args, "--resume"))
    assert f"--resume: {len(kept)} of 13" in said
    resumed = json.loads((out / "predictions.json").read_text())
    assert sorted(resumed, key=_key) == sorted(full, key=_key)
    lines = [json.loads(t) for t in (out / LOG_NAME).read_text().splitlines()]
    names = [e["file_name"] for e in lines if "people" in e and "frame" not in e]
    assert sorted(names) == sorted(p.name for p in images)  # each image once
    assert [e["frame"] for e in lines if "frame" in e] == list(range(5))
    assert not list(out.glob("predictions.rank*.jsonl"))
