"""COCO 2017 keypoints: download (resumable, verified), extract, check the layout."""

from __future__ import annotations

from pathlib import Path

from hrpose.prepare.download import (
    DownloadError,
    RetryPolicy,
    download,
    extract,
    manifest_path,
    manifest_problems,
)

BASE_URL = "http://images.cocodataset.org"
Parts = dict[str, tuple[str, int | None, str | None]]  # name -> (path on server, size, md5)
# Sizes and checksums as published for 2017.
FILES: Parts = {
    "train2017": ("zips/train2017.zip", 19336861798, "cced6f7f71b7629ddf16f17bbcfab6b2"),
    "val2017": ("zips/val2017.zip", 815585330, "442b8da7639aecaf257c1dceb8ba8c80"),
    "annotations": (
        "annotations/annotations_trainval2017.zip",
        252907541,
        "f4bbac642086de4f52a3fdda2de5fa2c",
    ),
}


def _part_folder(root: Path, name: str) -> Path:
    """Where a part's archive is extracted: annotations into ``root``, images into images/."""
    return root if name == "annotations" else root / "images"


def part_problems(root: str | Path, name: str, files: Parts | None = None) -> list[str]:
    """What differs between part ``name``'s extraction manifest and the files (empty: complete)."""
    rel = (files or FILES)[name][0]
    return manifest_problems(manifest_path(_part_folder(Path(root), name), Path(rel).name))


def layout_problems(
    root: str | Path, splits: tuple[str, ...] = ("train2017", "val2017"),
    files: Parts | None = None,
) -> list[str]:  # fmt: skip
    """What is missing from ``root`` for the given splits (empty list: ready).

    A part is complete when the manifest its extraction wrote last matches the files (every
    member present with its size): a half-extracted split is reported, not taken for ready.
    """
    root = Path(root)
    files = files or FILES
    problems = []
    for name in (*splits, "annotations"):
        if name not in files:
            raise DownloadError(f"unknown COCO part {name!r}; choose from {sorted(files)}")
        problems += part_problems(root, name, files)
    for split in splits:
        ann = root / "annotations" / f"person_keypoints_{split}.json"
        if not ann.is_file():
            problems.append(f"missing {ann}")
    return problems


def prepare_coco(
    root: str | Path,
    splits: tuple[str, ...] = ("train2017", "val2017"),
    base_url: str = BASE_URL,
    files: Parts | None = None,
    keep_archives: bool = False,
    progress: bool = True,
    retry: RetryPolicy | None = None,
) -> Path:
    """Download what ``splits`` need into ``root``/downloads, extract to the official layout
    (``images/<split>/``, ``annotations/``) and check it.

    Parts whose manifest matches are skipped; a half-done part (no manifest: the download or the
    extraction was interrupted) is finished: the kept archive is verified and extraction resumes
    (``retry``: how downloads back off, see :class:`RetryPolicy`).
    """
    root = Path(root)
    files = files or FILES
    if not layout_problems(root, splits, files):
        print(f"{root}: COCO {', '.join(splits)} already complete")
        return root
    for name in (*splits, "annotations"):
        problems = part_problems(root, name, files)
        if not problems:
            continue
        print(f"{root}: COCO {name}: {problems[0]}; completing it")
        rel, size, md5 = files[name]
        archive = download(
            f"{base_url.rstrip('/')}/{rel}",
            root / "downloads" / Path(rel).name,
            expected_size=size,
            md5=md5,
            progress=progress,
            retry=retry,
        )
        extract(archive, _part_folder(root, name), progress=progress)
        if not keep_archives:
            archive.unlink()
    problems = layout_problems(root, splits, files)
    if problems:
        raise DownloadError("COCO layout incomplete after extraction: " + "; ".join(problems))
    print(f"{root}: COCO {', '.join(splits)} ready")
    return root
