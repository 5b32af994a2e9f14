"""What `hrpose predict` works on: its sources (images, folders, videos, ``@list.txt`` files,
http(s) URLs) expanded into one ordered list of items, the same on every rank."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from hrpose.data.images import IMAGE_SUFFIXES
from hrpose.overlap import is_url
from hrpose.viz.video import VIDEO_SUFFIXES


@dataclass(frozen=True)
class Item:
    """One image or video of a run: where it is read from, and its file name (the key of its
    predictions.jsonl lines and the stem of its drawings)."""

    source: str
    name: str
    kind: str  # "image" | "video"


def _kind_of(name: str) -> str:
    return "video" if PurePosixPath(name).suffix.lower() in VIDEO_SUFFIXES else "image"


def _url_item(url: str) -> Item:
    name = PurePosixPath(unquote(urlparse(url).path)).name
    if not name:
        raise SystemExit(f"hrpose predict: {url}: a URL must end in a file name (…/photo.jpg)")
    return Item(url, name, _kind_of(name))


def _folder_items(folder: Path) -> list[Item]:
    suffixes = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    return [Item(str(p), p.name, _kind_of(p.name)) for p in files]


def _list_items(list_file: str) -> list[Item]:
    """The paths and URLs of a list file, one per line (blank lines and ``#`` comments skipped;
    relative paths are relative to the list file's folder)."""
    path = Path(list_file)
    if not path.is_file():
        raise SystemExit(
            f"hrpose predict: @{list_file}: no such list file (one path or URL a line)"
        )
    items = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if is_url(entry):
            items.append(_url_item(entry))
            continue
        p = Path(entry) if Path(entry).is_absolute() else path.parent / entry
        if not p.is_file():
            raise SystemExit(f"hrpose predict: @{list_file} line {n}: {entry}: no such file")
        items.append(Item(str(p), p.name, _kind_of(p.name)))
    return items


def expand_sources(sources: Sequence[str]) -> list[Item]:
    """The items of the sources, in order: a folder's images and videos by name, a list file's
    lines in their order. Two items with one file name are an error (their outputs would
    collide), as is a missing path."""
    items: list[Item] = []
    for source in sources:
        if source.startswith("@"):
            items += _list_items(source[1:])
        elif is_url(source):
            items.append(_url_item(source))
        elif Path(source).is_dir():
            items += _folder_items(Path(source))
        elif Path(source).exists():
            items.append(Item(source, Path(source).name, _kind_of(source)))
        else:
            raise SystemExit(f"hrpose predict: {source}: no such file, folder or camera index")
    twice = [name for name, n in Counter(it.name for it in items).items() if n > 1]
    if twice:
        raise SystemExit(
            f"hrpose predict: {len(twice)} file name(s) given twice ({', '.join(twice[:3])}): "
            "each writes <name>_pose.jpg and one predictions.jsonl line; rename them or run "
            "them separately"
        )
    return items
