"""Pretrained weights by name/URL against a local HTTP server on 127.0.0.1 (never the internet):
download, cache reuse with the server stopped, resume after a cut, hash mismatch, mmpose layout."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from hrpose import hub
from hrpose.cli import main
from hrpose.data.images import read_image
from hrpose.decode import DecodeParams
from hrpose.models import HigherHRNet, load_weights
from hrpose.models.weights import (
    WeightsError,
    extract_state_dict,
    from_mmpose,
    is_mmpose_layout,
    read_checkpoint,
)
from hrpose.predict import Predictor
from hrpose.prepare.download import (
    ChecksumError,
    DownloadError,
    download,
    file_problem,
    sha256_from_name,
)
from local_http import LocalServer

IMAGE = "000000000785.jpg"


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("HRPOSE_CACHE", str(tmp_path / "cache"))
    s = LocalServer()
    yield s
    s.stop()


def _mmpose_layout(state: dict) -> dict:
    """An hrpose/official HigherHRNet state dict as mmpose 0.x lays it out."""
    head = ("final_layers", "deconv_layers")
    return {
        ("keypoint_head." if k.split(".")[0] in head else "backbone.") + k: v
        for k, v in state.items()
    }


def _save(obj: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _entry(name: str, url: str, input_size: int = 192) -> hub.PretrainedWeights:
    return replace(hub.REGISTRY[hub.DEFAULT_POSE], name=name, url=url, input_size=input_size)


def _register(entry: hub.PretrainedWeights) -> str:
    hub.REGISTRY[entry.name] = entry
    return entry.name


@pytest.fixture(autouse=True)
def _clean_registry():
    before = dict(hub.REGISTRY)
    yield
    hub.REGISTRY.clear()
    hub.REGISTRY.update(before)


def test_hash_in_file_name(tmp_path) -> None:
    assert sha256_from_name("higher_hrnet32_coco_512x512-8ae85183_20200713.pth") == "8ae85183"
    assert sha256_from_name("https://x/pretrain_models/hrnet_w32-36af842e.pth") == "36af842e"
    assert sha256_from_name("resnet-0676ba61abc.pt?download=1") == "0676ba61abc"
    for name in ("model-20200713.pth", "w32.pth", "my-final-model.pt", "a-cafe.pt"):
        assert sha256_from_name(name) is None, name  # dates, words, short hex: no hash
    for w in hub.REGISTRY.values():
        assert w.expected_sha256 and w.url.startswith("https://") and w.licence, w.name
    f = tmp_path / "f.bin"
    f.write_bytes(b"hrpose")
    digest = hashlib.sha256(b"hrpose").hexdigest()
    assert file_problem(f, sha256=digest) is None and file_problem(f, sha256=digest[:8]) is None
    problem = file_problem(f, sha256="0" * 64)
    assert digest in problem and "0" * 64 in problem
    with pytest.raises(ValueError, match="8\\+ hex digits"):
        download("http://127.0.0.1:9/f.bin", tmp_path / "g.bin", sha256="abc")


def test_mmpose_layout_maps_and_loads(tmp_path) -> None:
    torch.manual_seed(0)
    src = HigherHRNet(8).eval()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    state = src.state_dict()
    mm = _mmpose_layout(state)
    assert is_mmpose_layout(mm) and not is_mmpose_layout(state)
    mapped = from_mmpose(mm)
    assert list(mapped) == list(state)
    assert all(mapped[k] is mm[n] for k, n in zip(mapped, mm, strict=True))
    with pytest.raises(WeightsError, match="not an mmpose 0.x HigherHRNet key"):
        from_mmpose({**mm, "neck.weight": torch.zeros(1)})
    # mmpose's file: {"meta": ..., "state_dict": ...}; mmcv's metadata may hold numpy values.
    path = tmp_path / "higher_hrnet8-00000000_20200101.pth"
    meta = {"epoch": 300, "config": "model = dict(...)", "best": np.float64(0.5), "a": np.ones(2)}
    path.write_bytes(_save({"meta": meta, "state_dict": mm}))
    assert read_checkpoint(path)["meta"]["best"] == 0.5
    assert list(extract_state_dict(read_checkpoint(path))) == list(state)
    dst = HigherHRNet(8).eval()
    report = load_weights(dst, path)
    assert not report.missing and not report.skipped and not report.backbone_only
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref, out = src(x), dst(x)
    assert torch.equal(out.low, ref.low) and torch.equal(out.high, ref.high)


def test_download_resume_cache_and_offline(server, shared_data, tmp_path, monkeypatch, capsys):
    """The default name downloads (resuming a cut) on first use, then works with no server."""
    weights = shared_data / "weights" / "w8-coco-mini.pt"
    mm = _mmpose_layout(extract_state_dict(read_checkpoint(weights)))
    data = _save({"meta": {"epoch": 32}, "state_dict": mm})
    sha = hashlib.sha256(data).hexdigest()
    rel = f"/mmpose/bottom_up/w8_coco_mini-{sha[:8]}_20261201.pth"
    server.handler.files[rel] = data
    server.handler.break_once.add(rel)
    monkeypatch.setitem(hub.REGISTRY, hub.DEFAULT_POSE, _entry(hub.DEFAULT_POSE, server.url + rel))

    # `hrpose predict photo.jpg` with no --weights: the default model, downloaded and saying so.
    image = shared_data / "coco-mini" / "images" / IMAGE
    out = tmp_path / "out"
    assert main(["predict", str(image), "--no-flip", "--output", str(out)]) == 0
    said = capsys.readouterr()
    assert f"default registered model {hub.DEFAULT_POSE}" in said.out
    assert "downloading" in said.err and server.url + rel in said.err
    assert (out / "000000000785_pose.jpg").is_file()
    ranges = [r for p, r in server.handler.log if p == rel]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"
    cached = hub.cached_path(server.url + rel)
    assert cached.read_bytes() == data and not cached.with_name(cached.name + ".part").exists()

    # Python, by name: the cached file, identical people to the original hrpose checkpoint.
    n = len(server.handler.log)
    params = DecodeParams(flip=False, detection_threshold=0.3)
    pretrained = Predictor.from_pretrained(params=params)
    assert pretrained.input_size == 192 and hub.DEFAULT_POSE in pretrained.description
    direct = Predictor.from_weights(weights, input_size=192, params=params)
    picture = read_image(image)
    a, b = pretrained(picture), direct(picture)
    assert len(b) > 0 and len(a) == len(b)
    assert np.array_equal(a.keypoints, b.keypoints)
    assert len(server.handler.log) == n  # no request: the cache served it

    # Server gone: the name, the URL and the CLI still resolve from the cache.
    server.stop()
    assert hub.resolve_weights(hub.DEFAULT_POSE) == cached
    assert hub.resolve_weights(server.url + rel) == cached
    assert main(["weights", "download", hub.DEFAULT_POSE]) == 0
    assert capsys.readouterr().out.strip() == str(cached)
    # `hrpose eval pose --weights NAME`: the registry's input size, the cached file's hash, and
    # the real coco-mini model's AP through the mmpose layout (0.58 with these settings).
    coco = shared_data / "coco-mini"
    ann, images, out = coco / "person_keypoints.json", coco / "images", tmp_path / "eval"
    args = ["--annotations", str(ann), "--images", str(images), "--output", str(out)]
    args += ["--no-flip", "--detection-threshold", "0.3", "--device", "cpu"]
    assert main(["eval", "pose", "--weights", hub.DEFAULT_POSE, *args]) == 0
    record = json.loads((out / "protocol.json").read_text())
    assert record["weights_sha256"] == sha and record["input_size"] == 192
    assert record["stats"]["AP"] > 0.5


def test_hash_mismatch_keeps_nothing(server, tmp_path) -> None:
    data = b"not the checkpoint the name promises" * 100
    sha = hashlib.sha256(data).hexdigest()
    server.handler.files["/w/bad-deadbeef_20200101.pth"] = data
    with pytest.raises(ChecksumError) as err:
        hub.resolve_weights(server.url + "/w/bad-deadbeef_20200101.pth", progress=False)
    assert sha in str(err.value) and "deadbeef" in str(err.value)
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []
    # torch.hub's name-<hex>.ext form passes when the prefix is right.
    server.handler.files[f"/w/good-{sha[:10]}.pt"] = data
    good = hub.resolve_weights(f"{server.url}/w/good-{sha[:10]}.pt", progress=False)
    assert good.read_bytes() == data
    # A registry entry's full hash wins; a corrupt cached file is deleted and fetched again.
    entry = replace(_entry("x", f"{server.url}/w/good-{sha[:10]}.pt"), sha256="0" * 64)
    with pytest.raises(ChecksumError, match="0" * 64):
        hub.resolve_weights(_register(entry), progress=False)
    assert not good.exists()
    good_entry = replace(entry, sha256=sha)
    good.write_bytes(b"truncated")
    assert hub.resolve_weights(_register(good_entry), quiet=True).read_bytes() == data
    # A leftover complete .part (the server answers 416 to its Range) is verified and kept.
    good.rename(good.with_name(good.name + ".part"))
    n = len(server.handler.log)
    assert hub.resolve_weights(_register(good_entry), quiet=True).read_bytes() == data
    assert server.handler.log[n:] == [(f"/w/good-{sha[:10]}.pt", f"bytes={len(data)}-")]


def test_two_urls_with_one_file_name_are_cached_apart(server) -> None:
    """The cache is keyed by URL: two sites' ``model.pth`` are both kept, each returned as its
    own, also offline; the file name stays readable and a name's hash is still checked."""
    a, b = b"the first site's model" * 50, b"the second site's model" * 50
    server.handler.files["/a/model.pth"] = a
    server.handler.files["/b/model.pth"] = b
    url_a, url_b = server.url + "/a/model.pth", server.url + "/b/model.pth"
    path_a = hub.resolve_weights(url_a, progress=False)
    path_b = hub.resolve_weights(url_b, progress=False)
    assert path_a != path_b and path_a.name == path_b.name == "model.pth"
    assert path_a.read_bytes() == a and path_b.read_bytes() == b
    assert hub.cached_path(url_a + "?download=1") == path_a  # a query string is not the file
    server.stop()
    assert hub.resolve_weights(url_a).read_bytes() == a
    assert hub.resolve_weights(url_b).read_bytes() == b
    sha = hashlib.sha256(a).hexdigest()
    named = f"/c/model-{sha[:10]}.pth"
    assert hub.cached_path(server.url + named).name == f"model-{sha[:10]}.pth"
    server2 = LocalServer()
    try:
        server2.handler.files[named] = b  # not what the name's hash says
        with pytest.raises(ChecksumError, match=sha[:10]):
            hub.resolve_weights(server2.url + named, progress=False)
        server2.handler.files[named] = a
        assert hub.resolve_weights(server2.url + named, quiet=True).read_bytes() == a
    finally:
        server2.stop()


def test_offline_without_cache_names_url_and_path(server) -> None:
    url = server.url + "/w/absent-8ae85183_20200713.pth"
    server.stop()
    with pytest.raises(DownloadError) as err:
        hub.resolve_weights(url, progress=False)
    msg = str(err.value)
    assert url in msg and str(hub.cached_path(url)) in msg and "offline" in msg
    with pytest.raises(WeightsError, match="Did you mean higherhrnet-w32-512"):
        hub.resolve_weights("higherhrnet-w32-51")
    with pytest.raises(WeightsError, match="not pose weights"):
        Predictor.from_pretrained("hrnet-w32-c")


def test_weights_list(capsys) -> None:
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert hub.REGISTRY, "no registered weights"
    for name, w in hub.REGISTRY.items():
        assert name in out and w.url in out and w.licence in out and w.metric in out
    assert f"{hub.DEFAULT_POSE}  [default" in out and "not measured by hrpose" in out


def test_classifier_weights_by_url(server) -> None:
    from hrpose.cli.eval_classifier import load_classifier
    from hrpose.models import HRNetClassifier

    torch.manual_seed(0)
    state = HRNetClassifier(8, num_classes=3, init_weights=False).state_dict()
    data = _save(state)
    sha = hashlib.sha256(data).hexdigest()
    server.handler.files[f"/w/cls-{sha[:10]}.pth"] = data
    model, _, _ = load_classifier(f"{server.url}/w/cls-{sha[:10]}.pth")
    assert torch.equal(model.state_dict()["classifier.weight"], state["classifier.weight"])
