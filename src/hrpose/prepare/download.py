"""Resumable downloads (HTTP Range, ``.part`` files), size/MD5 checks and zip extraction."""

from __future__ import annotations

import hashlib
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path


class DownloadError(RuntimeError):
    """A download that failed for good; the message names the URL and what to do."""


def md5_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download(
    url: str,
    dest: str | Path,
    *,
    expected_size: int | None = None,
    md5: str | None = None,
    retries: int = 5,
    progress: bool = True,
    chunk: int = 1 << 20,
    timeout: float = 60,
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part`` with an HTTP Range request.

    A complete ``dest`` (right size/MD5) is kept as is. Broken connections are retried from
    where they stopped; a server that ignores Range restarts the file. A wrong size or MD5 at
    the end deletes the file and raises :class:`DownloadError`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and _ok(dest, expected_size, md5):
        return dest
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, expected_size, progress, chunk, timeout)
            break
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
            if isinstance(e, urllib.error.HTTPError) and e.code in (403, 404, 410):
                raise DownloadError(f"{url}: HTTP {e.code}; check the URL or --base-url") from e
            if attempt == retries:
                raise DownloadError(
                    f"{url}: failed after {retries + 1} attempts ({e}); run the command again "
                    f"to resume from {part.stat().st_size if part.exists() else 0} bytes"
                ) from e
            time.sleep(min(2**attempt, 30) * 0.05)
    if not _ok(part, expected_size, md5):
        size = part.stat().st_size
        part.unlink()
        raise DownloadError(
            f"{url}: downloaded file is corrupt (size {size}, expected {expected_size}; "
            f"md5 expected {md5}); it was deleted, run the command again"
        )
    part.replace(dest)
    return dest


def _ok(path: Path, size: int | None, md5: str | None) -> bool:
    if size is not None and path.stat().st_size != size:
        return False
    return md5 is None or md5_file(path) == md5


def _fetch(url: str, part: Path, size: int | None, progress: bool, chunk: int, timeout: float):
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have == size:
        return
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if have and response.status != 206:  # Range ignored: start again
            have = 0
        total = size
        if total is None and response.headers.get("Content-Length"):
            total = have + int(response.headers["Content-Length"])
        from tqdm import tqdm

        with (
            open(part, "ab" if have else "wb") as f,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                desc=part.name[:-5],
                disable=not progress,
                dynamic_ncols=True,
            ) as bar,
        ):
            while block := response.read(chunk):
                f.write(block)
                bar.update(len(block))
        if total is not None and part.stat().st_size < total:
            raise ConnectionError(f"connection closed at {part.stat().st_size} of {total} bytes")


def extract(archive: str | Path, dest: str | Path, progress: bool = True) -> Path:
    """Extract a zip into ``dest`` with a progress bar; refuses paths that leave ``dest``."""
    from tqdm import tqdm

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        raise DownloadError(f"{archive}: not a zip archive (corrupt download?); delete it") from e
    with zf:
        members = zf.infolist()
        for m in tqdm(
            members,
            desc=f"extract {Path(archive).name}",
            unit="file",
            disable=not progress,
            dynamic_ncols=True,
        ):
            target = (dest / m.filename).resolve()
            if root not in target.parents and target != root:
                raise DownloadError(f"{archive}: unsafe path {m.filename!r} in the archive")
            zf.extract(m, dest)
    return dest
