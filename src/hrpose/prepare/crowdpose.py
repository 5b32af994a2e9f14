"""CrowdPose in the official layout from the archives the user downloaded (Google Drive).

The CrowdPose README links two Google Drive items: the images (``images.zip``, train + val +
test) and the annotations (``crowdpose_{train,val,test}.json``, as loose files or as the zip
Drive makes of the folder). Drive downloads need a browser, so nothing is fetched here. This
builds, as the official HigherHRNet README::

    root/json/crowdpose_{train,val,test,trainval}.json
    root/images/<id>.jpg

``crowdpose_trainval.json`` is made from train + val when missing, as the official
``tools/crowdpose_concat_train_val.py`` does (train's categories, images and annotations of both).
"""

from __future__ import annotations

import json
import shutil
import tarfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from hrpose.prepare.download import DownloadError

SPLITS = ("train", "val", "test", "trainval")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DOWNLOAD_HELP = (
    "download the images and annotations from the Google Drive links in the README of "
    "github.com/Jeff-sjtu/CrowdPose (section Dataset)"
)


def annotation_path(root: str | Path, split: str) -> Path:
    """``root/json/crowdpose_<split>.json`` (the official layout)."""
    return Path(root) / "json" / f"crowdpose_{split}.json"


def _members(source: Path) -> Iterator[tuple[str, int, object]]:
    """(file name, size, opener) of every file in a zip, a tar, a folder or a single file."""
    if not source.exists():
        raise DownloadError(f"{source}: no such archive, file or folder; {DOWNLOAD_HELP}")
    if source.is_dir():
        for p in sorted(source.rglob("*")):
            if p.is_file():
                yield p.name, p.stat().st_size, p
    elif zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield Path(info.filename).name, info.file_size, (zf, info)
    elif tarfile.is_tarfile(source):
        with tarfile.open(source) as tf:
            for info in tf:
                if info.isfile():
                    yield Path(info.name).name, info.size, (tf, info)
    else:
        yield source.name, source.stat().st_size, source


def _open(opener: object) -> IO[bytes]:
    if isinstance(opener, Path):
        return open(opener, "rb")
    container, info = opener  # type: ignore[misc]
    if isinstance(container, zipfile.ZipFile):
        return container.open(info)
    handle = container.extractfile(info)
    assert handle is not None  # a regular tar member
    return handle


def _destination(root: Path, name: str) -> Path | None:
    """Where a file of the downloads goes in the layout (None: not part of it)."""
    if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith("."):
        return root / "images" / name
    if name in {f"crowdpose_{s}.json" for s in SPLITS}:
        return root / "json" / name
    return None


def concat_train_val(train: dict, val: dict) -> dict:
    """The official trainval set: train's categories, the images and annotations of both."""
    return {
        "categories": train["categories"],
        "images": [*train["images"], *val["images"]],
        "annotations": [*train["annotations"], *val["annotations"]],
    }


def layout_problems(root: str | Path, splits: Sequence[str] = ("trainval", "test")) -> list[str]:
    """What the layout lacks for ``splits`` (annotation files, referenced images); empty: ready."""
    root = Path(root)
    problems = []
    present = {p.name for p in (root / "images").iterdir()} if (root / "images").is_dir() else set()
    for split in splits:
        ann = annotation_path(root, split)
        if not ann.is_file():
            problems.append(f"missing {ann}")
            continue
        names = {im["file_name"] for im in json.loads(ann.read_text())["images"]}
        missing = sorted(names - present)
        if missing:
            problems.append(
                f"{len(missing)} of the {len(names)} images of {ann.name} are not in "
                f"{root / 'images'} (e.g. {missing[0]})"
            )
    return problems


def prepare_crowdpose(
    root: str | Path, sources: Sequence[str | Path], progress: bool = True
) -> Path:
    """Copy images and annotation files out of ``sources`` (zips, tars, folders or files) into
    the official layout under ``root``, add trainval, and check that nothing is missing.

    Files already in place with the same size are skipped, so a rerun only completes the rest.
    """
    from tqdm import tqdm

    root = Path(root)
    if not sources:
        raise DownloadError(f"no archives given; {DOWNLOAD_HELP}, then pass the files")
    copied = found = 0
    for source in map(Path, sources):
        members = tqdm(
            _members(source), desc=source.name, unit="file", disable=not progress, leave=False
        )
        for name, size, opener in members:
            target = _destination(root, name)
            if target is None:
                continue
            found += 1
            if target.is_file() and target.stat().st_size == size:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".part")
            with _open(opener) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp.replace(target)
            copied += 1
    if not found:
        raise DownloadError(
            f"no CrowdPose images or crowdpose_<split>.json files in {[str(s) for s in sources]}; "
            f"{DOWNLOAD_HELP}"
        )
    trainval = annotation_path(root, "trainval")
    train, val = annotation_path(root, "train"), annotation_path(root, "val")
    if not trainval.is_file() and train.is_file() and val.is_file():
        merged = concat_train_val(json.loads(train.read_text()), json.loads(val.read_text()))
        tmp = trainval.with_name(trainval.name + ".part")
        tmp.write_text(json.dumps(merged))
        tmp.replace(trainval)
    problems = layout_problems(root)
    if problems:
        raise DownloadError(
            "CrowdPose layout incomplete: " + "; ".join(problems) + f". {DOWNLOAD_HELP}"
        )
    print(f"{root}: CrowdPose trainval and test ready ({copied} files written)")
    return root
