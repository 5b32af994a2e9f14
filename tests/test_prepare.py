"""Data preparation against a local HTTP server (Range, broken connections, bad checksums)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from hrpose.cli import main
from hrpose.prepare.coco import layout_problems, prepare_coco
from hrpose.prepare.download import DownloadError, download, extract
from hrpose.prepare.imagenet import prepare_imagenet
from local_http import LocalServer


@pytest.fixture
def server():
    s = LocalServer()
    yield s.url, s.handler
    s.stop()


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_resume_after_broken_connection(server, tmp_path) -> None:
    url, h = server
    payload = bytes(range(256)) * 4000
    h.files["/big.bin"] = payload
    h.break_once.add("/big.bin")
    md5 = hashlib.md5(payload).hexdigest()
    path = download(f"{url}/big.bin", tmp_path / "big.bin", md5=md5, progress=False)
    assert path.read_bytes() == payload
    ranges = [r for p, r in h.log if p == "/big.bin"]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"
    n = len(h.log)
    download(f"{url}/big.bin", tmp_path / "big.bin", md5=md5, progress=False)
    assert len(h.log) == n  # complete file: nothing fetched again


def test_partial_file_resumes_and_range_ignored_restarts(server, tmp_path) -> None:
    url, h = server
    payload = b"x" * 5000 + b"y" * 5000
    h.files["/f.bin"] = payload
    (tmp_path / "f.bin.part").write_bytes(payload[:3000])
    download(f"{url}/f.bin", tmp_path / "f.bin", expected_size=len(payload), progress=False)
    assert (tmp_path / "f.bin").read_bytes() == payload and h.log[-1][1] == "bytes=3000-"
    h.ignore_range.add("/f.bin")
    (tmp_path / "g.bin.part").write_bytes(b"garbage")
    download(f"{url}/f.bin", tmp_path / "g.bin", expected_size=len(payload), progress=False)
    assert (tmp_path / "g.bin").read_bytes() == payload


def test_bad_checksum_and_missing(server, tmp_path) -> None:
    url, h = server
    h.files["/a.bin"] = b"abc"
    with pytest.raises(DownloadError, match="corrupt"):
        download(f"{url}/a.bin", tmp_path / "a.bin", md5="0" * 32, progress=False)
    assert not (tmp_path / "a.bin").exists() and not (tmp_path / "a.bin.part").exists()
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{url}/nope.bin", tmp_path / "n.bin", progress=False)


def test_extract_refuses_escaping_paths(tmp_path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(_zip({"../evil.txt": b"x"}))
    with pytest.raises(DownloadError, match="unsafe"):
        extract(bad, tmp_path / "out", progress=False)
    (tmp_path / "not.zip").write_bytes(b"nope")
    with pytest.raises(DownloadError, match="not a zip"):
        extract(tmp_path / "not.zip", tmp_path / "out", progress=False)


def test_prepare_coco_layout(server, tmp_path, capsys) -> None:
    url, h = server
    ann = json.dumps({"images": [], "annotations": [], "categories": []}).encode()
    files = {
        "val2017": ("zips/val2017.zip", None, None),
        "annotations": ("annotations/annotations_trainval2017.zip", None, None),
    }
    h.files["/zips/val2017.zip"] = _zip({"val2017/000000000001.jpg": b"jpg"})
    annotations = _zip({"annotations/person_keypoints_val2017.json": ann})
    h.files["/annotations/annotations_trainval2017.zip"] = annotations
    files["annotations"] = (files["annotations"][0], None, hashlib.md5(annotations).hexdigest())
    root = tmp_path / "COCO"
    assert layout_problems(root, ("val2017",))
    prepare_coco(root, ("val2017",), url, files=files, progress=False)
    assert layout_problems(root, ("val2017",)) == []
    assert (root / "images" / "val2017" / "000000000001.jpg").read_bytes() == b"jpg"
    assert not (root / "downloads" / "val2017.zip").exists()
    n = len(h.log)
    prepare_coco(root, ("val2017",), url, files=files, progress=False)
    assert len(h.log) == n and "already complete" in capsys.readouterr().out
    assert main(["prepare", "coco", "--root", str(tmp_path / "C2"), "--splits", "val2017",
                 "--base-url", f"{url}/missing"]) == 1  # fmt: skip


def test_prepare_imagenet_from_kaggle_zip(tmp_path) -> None:
    entries = {
        "LOC_synset_mapping.txt": b"n01440764 tench, Tinca tinca\nn01443537 goldfish\n",
        "LOC_val_solution.csv": b"ImageId,PredictionString\n"
        b"ILSVRC2012_val_00000001,n01443537 1 2 3 4\nILSVRC2012_val_00000002,n01440764 5 6 7 8\n",
        "ILSVRC/Data/CLS-LOC/train/n01440764/n01440764_1.JPEG": b"a",
        "ILSVRC/Data/CLS-LOC/train/n01443537/n01443537_7.JPEG": b"b",
        "ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000001.JPEG": b"c",
        "ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000002.JPEG": b"d",
    }
    archive = tmp_path / "imagenet-object-localization-challenge.zip"
    archive.write_bytes(_zip(entries))
    root = tmp_path / "ImageNet"
    prepare_imagenet(archive, root, progress=False)
    assert (root / "val" / "n01443537" / "ILSVRC2012_val_00000001.JPEG").read_bytes() == b"c"
    assert (root / "train" / "n01440764" / "n01440764_1.JPEG").is_file()
    assert json.loads((root / "labels.json").read_text())["n01443537"] == "goldfish"
    with pytest.raises(DownloadError, match="kaggle competitions download"):
        prepare_imagenet(tmp_path / "absent.zip", root)
    assert Path(root).is_dir()
