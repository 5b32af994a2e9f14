"""Resumable downloads (HTTP Range, ``.part`` files), size/MD5/SHA-256 checks, zip extraction."""

from __future__ import annotations

import hashlib
import re
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path


class DownloadError(RuntimeError):
    """A download that failed for good; the message names the URL and what to do."""


class ChecksumError(DownloadError):
    """A file whose size or hash is not the expected one; the message names both values."""


# torch.hub's ``name-<hex>.ext`` and mmpose's ``name-<hex8>_<date>.ext``: the hex is a prefix of
# the file's SHA-256. At least 8 digits and one letter, so that a plain ``-20200713`` date or
# version number is not taken for a hash.
_HASH_IN_NAME = re.compile(r"-(?=[0-9]*[a-f])([0-9a-f]{8,64})(?:_\d{8})?\.[A-Za-z0-9]+$")


def file_hash(path: str | Path, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file (``"md5"`` or ``"sha256"``), read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def md5_file(path: str | Path, chunk: int = 1 << 20) -> str:
    return file_hash(path, "md5", chunk)


def sha256_from_name(name: str) -> str | None:
    """The SHA-256 prefix a file name carries (``hrnet_w32-36af842e.pth``,
    ``higher_hrnet32_coco_512x512-8ae85183_20200713.pth``), or None."""
    match = _HASH_IN_NAME.search(Path(name.split("?", 1)[0]).name)
    return match.group(1) if match else None


def download(
    url: str,
    dest: str | Path,
    *,
    expected_size: int | None = None,
    md5: str | None = None,
    sha256: str | None = None,
    retries: int = 5,
    progress: bool = True,
    chunk: int = 1 << 20,
    timeout: float = 60,
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part`` with an HTTP Range request.

    A complete ``dest`` (right size/checksums) is kept as is. Broken connections are retried
    from where they stopped; a server that ignores Range restarts the file. ``sha256`` may be
    the full digest or a prefix of it (as in torch.hub file names). A wrong size or checksum at
    the end deletes the partial file and raises :class:`ChecksumError` naming both values; only
    a verified file is ever renamed to ``dest``.
    """
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{8,64}", sha256):
        raise ValueError(f"sha256 {sha256!r}: give the hex digest or a prefix of 8+ hex digits")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and not file_problem(dest, expected_size, md5, sha256):
        return dest
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, expected_size, progress, chunk, timeout)
            break
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
            if isinstance(e, urllib.error.HTTPError) and e.code in (403, 404, 410):
                raise DownloadError(f"{url}: HTTP {e.code}; check the URL (or --base-url)") from e
            if attempt == retries:
                raise DownloadError(
                    f"{url}: failed after {retries + 1} attempts ({e}); run the command again "
                    f"to resume from {part.stat().st_size if part.exists() else 0} bytes"
                ) from e
            time.sleep(min(2**attempt, 30) * 0.05)
    problem = file_problem(part, expected_size, md5, sha256)
    if problem:
        part.unlink()
        raise ChecksumError(
            f"{url}: downloaded file is corrupt ({problem}); it was deleted. Run the command "
            "again; if the mismatch repeats, the file on the server is not the one expected"
        )
    part.replace(dest)
    return dest


def file_problem(
    path: str | Path,
    size: int | None = None,
    md5: str | None = None,
    sha256: str | None = None,
) -> str | None:
    """What is wrong with ``path`` (size, MD5, SHA-256 or a SHA-256 prefix), or None."""
    path = Path(path)
    have = path.stat().st_size
    if size is not None and have != size:
        return f"size {have} bytes, expected {size}"
    if md5 is not None and (got := md5_file(path)) != md5.lower():
        return f"md5 {got}, expected {md5}"
    if sha256 is not None and not (got := file_hash(path)).startswith(sha256.lower()):
        return f"sha256 {got}, expected {sha256}{'' if len(sha256) == 64 else '...'}"
    return None


def _fetch(url: str, part: Path, size: int | None, progress: bool, chunk: int, timeout: float):
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have == size:
        return
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if have and e.code == 416:  # the part is already whole; the checksum decides
            return
        raise
    with response:
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
