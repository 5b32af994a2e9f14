"""COCO 2017 keypoints: download (resumable, verified), extract, check the layout."""

from __future__ import annotations

from pathlib import Path

from hrpose.prepare.download import DownloadError, download, extract

BASE_URL = "http://images.cocodataset.org"
# name -> (path on the server, size in bytes, md5); sizes and checksums as published for 2017.
FILES = {
    "train2017": ("zips/train2017.zip", 19336861798, "cced6f7f71b7629ddf16f17bbcfab6b2"),
    "val2017": ("zips/val2017.zip", 815585330, "442b8da7639aecaf257c1dceb8ba8c80"),
    "annotations": (
        "annotations/annotations_trainval2017.zip",
        252907541,
        "f4bbac642086de4f52a3fdda2de5fa2c",
    ),
}


def layout_problems(
    root: str | Path, splits: tuple[str, ...] = ("train2017", "val2017")
) -> list[str]:
    """What is missing from ``root`` for the given splits (empty list: ready)."""
    root = Path(root)
    problems = []
    for split in splits:
        ann = root / "annotations" / f"person_keypoints_{split}.json"
        if not ann.is_file():
            problems.append(f"missing {ann}")
        images = root / "images" / split
        if not images.is_dir() or not any(images.iterdir()):
            problems.append(f"missing or empty {images}")
    return problems


def prepare_coco(
    root: str | Path,
    splits: tuple[str, ...] = ("train2017", "val2017"),
    base_url: str = BASE_URL,
    files: dict[str, tuple[str, int | None, str | None]] | None = None,
    keep_archives: bool = False,
    progress: bool = True,
) -> Path:
    """Download what ``splits`` need into ``root``/downloads, extract to the official layout
    (``images/<split>/``, ``annotations/``) and check it. Complete parts are skipped."""
    root = Path(root)
    files = files or FILES
    if not layout_problems(root, splits):
        print(f"{root}: COCO {', '.join(splits)} already complete")
        return root
    wanted = [*splits, "annotations"]
    for name in wanted:
        if name not in files:
            raise DownloadError(f"unknown COCO part {name!r}; choose from {sorted(files)}")
        rel, size, md5 = files[name]
        if (
            name != "annotations"
            and (root / "images" / name).is_dir()
            and any((root / "images" / name).iterdir())
        ):
            continue
        archive = download(
            f"{base_url.rstrip('/')}/{rel}",
            root / "downloads" / Path(rel).name,
            expected_size=size,
            md5=md5,
            progress=progress,
        )
        extract(archive, root if name == "annotations" else root / "images", progress=progress)
        if not keep_archives:
            archive.unlink()
    problems = layout_problems(root, splits)
    if problems:
        raise DownloadError("COCO layout incomplete after extraction: " + "; ".join(problems))
    print(f"{root}: COCO {', '.join(splits)} ready")
    return root
