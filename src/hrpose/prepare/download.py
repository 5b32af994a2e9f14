"""Resumable downloads (HTTP Range, ``.part`` files) with retries that back off over minutes,
size/MD5/SHA-256 checks, and resumable zip extraction that writes a manifest last.

A full disk (``ENOSPC``) is never retried: it raises :class:`NoSpaceError` naming the folder and
the bytes still needed. An extraction is complete when its manifest (every member's path and
size, written after the last member) matches the files on disk; a rerun of an interrupted one
skips the members already in place and writes the rest.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path


class DownloadError(RuntimeError):
    """A download that failed for good; the message names the URL and what to do."""


class ChecksumError(DownloadError):
    """A file whose size or hash is not the expected one; the message names both values."""


class NoSpaceError(DownloadError):
    """The disk filled up (ENOSPC); the message names the folder and the space still needed."""


@dataclass(frozen=True)
class RetryPolicy:
    """How a download retries transient failures (network errors, HTTP 5xx, cut connections).

    ``attempts`` tries in a row that bring no new byte, waiting ``first_delay_s`` after the first
    failure and twice as long after each further one, at most ``max_delay_s``; an attempt that
    brings bytes resets the count. The default waits 2+4+...+64+120 s, about four minutes, before
    giving up: long enough for a server restart or a network switch-over.
    """

    attempts: int = 8
    first_delay_s: float = 2.0
    max_delay_s: float = 120.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.first_delay_s < 0 or self.max_delay_s < self.first_delay_s:
            raise ValueError(f"{self}: need attempts >= 1 and 0 <= first_delay_s <= max_delay_s")

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` (>= 1) failures in a row."""
        return min(self.first_delay_s * 2.0 ** (failures - 1), self.max_delay_s)

    def total_wait_s(self) -> float:
        """Seconds waited in all before giving up (no attempt making progress)."""
        return sum(self.delay(i) for i in range(1, self.attempts))


def no_space_error(what: str, folder: Path, needed: int | None, then: str) -> NoSpaceError:
    """A :class:`NoSpaceError` for ``what``, naming ``folder``, the bytes ``needed`` and the free
    space, and what a rerun does (``then``)."""
    free = shutil.disk_usage(folder).free if folder.exists() else None
    need = "an unknown size" if needed is None else f"{_size(needed)} more"
    have = "" if free is None else f", {_size(free)} free"
    return NoSpaceError(
        f"{what}: no space left on the disk of {folder} (needs {need}{have}); free space there "
        f"or use another --root, then run the command again ({then}). Not retried"
    )


def _size(n: int) -> str:
    """Bytes in a human unit (``1.5 GB``) with the exact count."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit} ({n} bytes)"
    return f"{n} bytes"


def _is_no_space(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno == errno.ENOSPC


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
    retry: RetryPolicy | None = None,
    progress: bool = True,
    chunk: int = 1 << 20,
    timeout: float = 60,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part`` with an HTTP Range request.

    A complete ``dest`` (right size/checksums) is kept as is. Broken connections are retried
    from where they stopped; a server that ignores Range restarts the file. ``sha256`` may be
    the full digest or a prefix of it (as in torch.hub file names). A wrong size or checksum at
    the end deletes the partial file and raises :class:`ChecksumError` naming both values; only
    a verified file is ever renamed to ``dest``. Failures are retried as ``retry`` says (default
    :class:`RetryPolicy`: about four minutes of back-off; ``sleep`` waits, tests pass their
    own); HTTP 403/404/410 and a full disk (:class:`NoSpaceError`) are not retried.
    """
    retry = retry or RetryPolicy()
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{8,64}", sha256):
        raise ValueError(f"sha256 {sha256!r}: give the hex digest or a prefix of 8+ hex digits")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and not file_problem(dest, expected_size, md5, sha256):
        return dest
    part = dest.with_name(dest.name + ".part")
    failures = 0
    while True:
        before = _part_size(part)
        try:
            _fetch(url, part, expected_size, progress, chunk, timeout)
            break
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
            if _is_no_space(e):
                raise no_space_error(url, part.parent, _still_needed(part, expected_size),
                                     f"it resumes at {_part_size(part)} bytes") from e  # fmt: skip
            if isinstance(e, urllib.error.HTTPError) and e.code in (403, 404, 410):
                raise DownloadError(f"{url}: HTTP {e.code}; check the URL (or --base-url)") from e
            failures = 1 if _part_size(part) > before else failures + 1
            if failures >= retry.attempts:
                raise DownloadError(
                    f"{url}: {failures} attempts in a row failed, over "
                    f"{retry.total_wait_s():.0f} s of back-off ({e}); run the command again to "
                    f"resume from {_part_size(part)} bytes (hrpose prepare waits longer with "
                    "--retries and --retry-delay)"
                ) from e
            sleep(retry.delay(failures))
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


def _part_size(part: Path) -> int:
    return part.stat().st_size if part.exists() else 0


def _still_needed(part: Path, size: int | None) -> int | None:
    return None if size is None else max(0, size - _part_size(part))


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
                try:
                    f.write(block)
                except OSError as e:
                    if not _is_no_space(e):
                        raise
                    done = part.stat().st_size
                    needed = None if total is None else max(0, total - done)
                    raise no_space_error(url, part.parent, needed,
                                         f"it resumes at {done} bytes") from e  # fmt: skip
                bar.update(len(block))
        if total is not None and part.stat().st_size < total:
            raise ConnectionError(f"connection closed at {part.stat().st_size} of {total} bytes")


def contained_path(root: str | Path, name: str, what: str) -> Path:
    """``root / name`` for a member name of an archive or list, refusing one that leaves
    ``root`` (``../``, an absolute path); ``what`` (the archive) starts the error message."""
    root_s = os.path.normpath(os.path.abspath(root))
    target = os.path.normpath(os.path.join(root_s, name))
    if os.path.isabs(name) or os.path.commonpath([root_s, target]) != root_s or target == root_s:
        raise DownloadError(f"{what}: unsafe path {name!r} (it would be written outside {root})")
    return Path(root) / os.path.relpath(target, root_s)


MANIFEST_SUFFIX = ".manifest.json"


def manifest_path(dest: str | Path, archive_name: str) -> Path:
    """Where the manifest of ``archive_name`` extracted into ``dest`` lives."""
    return Path(dest) / f"{archive_name}{MANIFEST_SUFFIX}"


def write_manifest(path: str | Path, members: Mapping[str, int], source: str) -> Path:
    """Write ``{"source", "members": {relative path: size}}`` atomically (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps({"source": source, "members": dict(members)}, indent=0))
    tmp.replace(path)
    return path


def manifest_problems(path: str | Path) -> list[str]:
    """What differs between a manifest and the files beside it (empty: complete).

    Member paths are relative to the manifest's folder; a member missing or of another size is
    named (the first few, and how many in all).
    """
    path = Path(path)
    if not path.is_file():
        return [f"no manifest {path} (never extracted, or the extraction was interrupted)"]
    try:
        members = json.loads(path.read_text())["members"]
    except (ValueError, KeyError, TypeError) as e:
        return [f"unreadable manifest {path} ({e})"]
    bad = []
    for name, size in members.items():
        target = path.parent / name
        try:
            have = target.stat().st_size
        except OSError:
            bad.append(f"{target} missing")
            continue
        if have != size:
            bad.append(f"{target} has {have} bytes, expected {size}")
    if not bad:
        return []
    more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
    return [f"{len(bad)} of the {len(members)} files of {path.name} do not match: "
            + "; ".join(bad[:3]) + more]  # fmt: skip


def extract(archive: str | Path, dest: str | Path, progress: bool = True) -> Path:
    """Extract a zip into ``dest``, then write its manifest (``dest/<zip name>.manifest.json``).

    Resumable: a member already in place with its size is skipped; each member is written to a
    ``.part`` file and renamed, so an interrupted run never leaves a short file under a member's
    name. Paths that leave ``dest`` are refused; a full disk raises :class:`NoSpaceError`.
    """
    from tqdm import tqdm

    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        raise DownloadError(f"{archive}: not a zip archive (corrupt download?); delete it") from e
    with zf:
        members = zf.infolist()
        targets = [contained_path(dest, m.filename, str(archive)) for m in members]
        files = {}
        pairs = tqdm(list(zip(members, targets, strict=True)), desc=f"extract {archive.name}",
                     unit="file", disable=not progress, dynamic_ncols=True)  # fmt: skip
        for i, (m, target) in enumerate(pairs):
            if m.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            files[target.relative_to(dest).as_posix()] = m.file_size
            if target.is_file() and target.stat().st_size == m.file_size:
                continue
            tmp = target.with_name(target.name + ".part")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                tmp.replace(target)
            except OSError as e:
                tmp.unlink(missing_ok=True)  # a short file is no use; its space is
                if not _is_no_space(e):
                    raise
                rest = sum(x.file_size for x in members[i:] if not x.is_dir())
                raise no_space_error(f"extracting {archive}", dest, rest,
                                     "it skips the files already extracted") from e  # fmt: skip
    write_manifest(manifest_path(dest, archive.name), files, archive.name)
    return dest
