"""ImageNet from the Kaggle ImageNet Object Localization Challenge zip (no remote scripts).

The archive (``imagenet-object-localization-challenge.zip``, about 155 GB) is downloaded by the
user, e.g. ``kaggle competitions download -c imagenet-object-localization-challenge``; this
builds ``root/train/<wnid>/*.JPEG``, ``root/val/<wnid>/*.JPEG`` and ``root/labels.json``.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from pathlib import Path

from hrpose.prepare.download import DownloadError

TRAIN_PREFIX = "ILSVRC/Data/CLS-LOC/train/"
VAL_PREFIX = "ILSVRC/Data/CLS-LOC/val/"


def prepare_imagenet(archive: str | Path, root: str | Path, progress: bool = True) -> Path:
    """Class-folder layout from the Kaggle zip; val labels from ``LOC_val_solution.csv``."""
    from tqdm import tqdm

    archive, root = Path(archive), Path(root)
    if not archive.is_file():
        raise DownloadError(
            f"{archive} not found. Download it with the Kaggle CLI: kaggle competitions download "
            "-c imagenet-object-localization-challenge (accept the competition rules first)"
        )
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        raise DownloadError(f"{archive}: not a zip archive (incomplete download?)") from e
    with zf:
        names = set(zf.namelist())
        for needed in ("LOC_synset_mapping.txt", "LOC_val_solution.csv"):
            if needed not in names:
                raise DownloadError(f"{archive}: {needed} missing; is it the Kaggle ImageNet zip?")
        labels = {}
        for line in zf.read("LOC_synset_mapping.txt").decode().splitlines():
            if line.strip():
                wnid, _, name = line.partition(" ")
                labels[wnid] = name.strip()
        val_class = {}
        rows = csv.DictReader(io.StringIO(zf.read("LOC_val_solution.csv").decode()))
        for row in rows:
            val_class[row["ImageId"]] = row["PredictionString"].split()[0]
        members = [m for m in zf.infolist() if not m.is_dir() and m.filename.endswith(".JPEG")]
        done = 0
        for m in tqdm(members, desc="imagenet", unit="img", disable=not progress):
            if m.filename.startswith(TRAIN_PREFIX):
                wnid, file = m.filename[len(TRAIN_PREFIX) :].split("/")[-2:]
                target = root / "train" / wnid / file
            elif m.filename.startswith(VAL_PREFIX):
                file = m.filename[len(VAL_PREFIX) :]
                stem = Path(file).stem
                if stem not in val_class:
                    raise DownloadError(f"{m.filename}: no label in LOC_val_solution.csv")
                target = root / "val" / val_class[stem] / file
            else:
                continue
            if target.is_file() and target.stat().st_size == m.file_size:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            done += 1
    (root / "labels.json").write_text(json.dumps(labels, indent=0))
    print(f"{root}: ImageNet ready ({len(labels)} classes, {done} files written)")
    return root
