"""ImageNet from the Kaggle ImageNet Object Localization Challenge zip (no remote scripts).

The archive (``imagenet-object-localization-challenge.zip``, about 155 GB) is downloaded by the
user, e.g. ``kaggle competitions download -c imagenet-object-localization-challenge``; this
builds ``root/train/<wnid>/*.JPEG``, ``root/val/<wnid>/*.JPEG`` and ``root/labels.json``, then
``root/<archive name>.manifest.json`` (every file written and its size) last: a rerun with a
matching manifest does nothing, and one after an interruption writes only what is missing.
Member names and the class ids of the val CSV become paths only inside their split's folder.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import shutil
import zipfile
from pathlib import Path

from hrpose.prepare.download import (
    DownloadError,
    contained_path,
    manifest_path,
    manifest_problems,
    no_space_error,
    write_manifest,
)

TRAIN_PREFIX = "ILSVRC/Data/CLS-LOC/train/"
VAL_PREFIX = "ILSVRC/Data/CLS-LOC/val/"


def prepare_imagenet(archive: str | Path, root: str | Path, progress: bool = True) -> Path:
    """Class-folder layout from the Kaggle zip; val labels from ``LOC_val_solution.csv``."""
    from tqdm import tqdm

    archive, root = Path(archive), Path(root)
    manifest = manifest_path(root, archive.name)
    if manifest.is_file() and not manifest_problems(manifest):
        print(f"{root}: ImageNet already complete ({manifest.name} matches)")
        return root
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
        done, written = 0, {}
        for i, m in enumerate(tqdm(members, desc="imagenet", unit="img", disable=not progress)):
            target = _target(root, m.filename, val_class, str(archive))
            if target is None:
                continue
            written[target.relative_to(root).as_posix()] = m.file_size
            if target.is_file() and target.stat().st_size == m.file_size:
                continue
            tmp = target.with_name(target.name + ".part")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                tmp.replace(target)
            except OSError as e:
                tmp.unlink(missing_ok=True)
                if e.errno != errno.ENOSPC:
                    raise
                rest = sum(x.file_size for x in members[i:])
                raise no_space_error(f"extracting {archive}", root, rest,
                                     "it skips the files already written") from e  # fmt: skip
            done += 1
    (root / "labels.json").write_text(json.dumps(labels, indent=0))
    write_manifest(manifest, written, archive.name)
    print(f"{root}: ImageNet ready ({len(labels)} classes, {done} files written)")
    return root


def _target(root: Path, name: str, val_class: dict[str, str], archive: str) -> Path | None:
    """Where a JPEG member of the Kaggle zip goes (None: neither train nor val).

    The member name (train: ``<wnid>/<file>``; val: ``<file>``) and the val CSV's class id are
    joined under ``root/train`` or ``root/val`` only when the result stays there (``../`` refused).
    """
    if name.startswith(TRAIN_PREFIX):
        return contained_path(root / "train", name[len(TRAIN_PREFIX) :], archive)
    if name.startswith(VAL_PREFIX):
        file = name[len(VAL_PREFIX) :]
        stem = Path(file).stem
        if stem not in val_class:
            raise DownloadError(f"{name}: no label in LOC_val_solution.csv")
        folder = contained_path(root / "val", val_class[stem], f"{archive}: LOC_val_solution.csv")
        return contained_path(folder, file, archive)
    return None
