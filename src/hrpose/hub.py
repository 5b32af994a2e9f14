"""Pretrained weights by name or URL: a small registry and a verified download cache.

``resolve_weights`` turns a local path, an http(s) URL or a registered name into a local file.
Downloads go to ``$HRPOSE_CACHE/weights/<key>/<file name>`` (default ``~/.cache/hrpose``),
where ``key`` is the first 12 hex digits of the SHA-256 of the URL without its query string, so
two sites' ``model.pth`` are kept apart and the file name stays as published. They show a
progress bar, resume after a cut connection, and are kept only once their SHA-256 matches: the
full hash where the registry records one, else the prefix in the file name (torch.hub's
``name-<hex>.ext``, mmpose's ``name-<hex8>_<date>.ext``). A cached file is used without any
network access.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from hrpose.models.weights import WeightsError
from hrpose.prepare.download import (
    ChecksumError,
    DownloadError,
    RetryPolicy,
    download,
    file_problem,
    sha256_from_name,
)

# A first use on an offline machine should fail in seconds, not after the minutes of back-off
# that dataset downloads (hrpose prepare) wait: about 1.5 s in all.
WEIGHTS_RETRY = RetryPolicy(attempts=5, first_delay_s=0.1, max_delay_s=0.8)


@dataclass(frozen=True)
class PretrainedWeights:
    """One registered file: where it lives, what it is, and what its source reports for it."""

    name: str
    url: str
    model: str  # e.g. "HigherHRNet-W32"
    kind: str  # "pose" (loads into HigherHRNet) or "classifier" (HRNetClassifier / backbone)
    input_size: int  # the input size the reported figure was measured at
    metric: str  # the source's figure, not measured by hrpose
    protocol: str
    params: int  # tensors' element count (hrpose's model of this architecture)
    licence: str  # as the source states it
    source: str
    sha256: str | None = None  # full digest where known; else the file name's prefix is used

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def expected_sha256(self) -> str | None:
        return self.sha256 or sha256_from_name(self.file_name)

    @property
    def approx_size_mb(self) -> float:
        """float32 parameters in MB: the file size to within its buffers and metadata."""
        return self.params * 4 / 1e6


_MMPOSE = "https://download.openmmlab.com/mmpose/"
_MMPOSE_SOURCE = (
    "mmpose v0.29.0 model zoo, configs/body/2d_kpt_sview_rgb_img/associative_embedding/coco/"
    "higherhrnet_coco.md"
)
_MMPOSE_PROTOCOL = (
    "COCO val2017, single scale, flip test, adjust + refine, detection threshold 0.1, tag "
    "threshold 1, 30 people (mmpose's test_cfg)"
)
_MMPOSE_LICENCE = "Apache-2.0 (mmpose repository)"

REGISTRY: dict[str, PretrainedWeights] = {
    w.name: w
    for w in (
        PretrainedWeights(
            "higherhrnet-w32-512",
            _MMPOSE + "bottom_up/higher_hrnet32_coco_512x512-8ae85183_20200713.pth",
            "HigherHRNet-W32", "pose", 512, "COCO AP 0.677 (mmpose; 0.706 multi-scale)",
            _MMPOSE_PROTOCOL, 28_645_331, _MMPOSE_LICENCE, _MMPOSE_SOURCE,
        ),
        PretrainedWeights(
            "higherhrnet-w32-640",
            _MMPOSE + "bottom_up/higher_hrnet32_coco_640x640-a22fe938_20200712.pth",
            "HigherHRNet-W32", "pose", 640, "COCO AP 0.686 (mmpose; 0.706 multi-scale)",
            _MMPOSE_PROTOCOL, 28_645_331, _MMPOSE_LICENCE, _MMPOSE_SOURCE,
        ),
        PretrainedWeights(
            "higherhrnet-w48-512",
            _MMPOSE + "bottom_up/higher_hrnet48_coco_512x512-60fedcbc_20200712.pth",
            "HigherHRNet-W48", "pose", 512, "COCO AP 0.686 (mmpose; 0.716 multi-scale)",
            _MMPOSE_PROTOCOL, 63_827_139, _MMPOSE_LICENCE, _MMPOSE_SOURCE,
        ),
        PretrainedWeights(
            "hrnet-w32-c",
            _MMPOSE + "pretrain_models/hrnet_w32-36af842e.pth",
            "HRNet-W32-C", "classifier", 224, "ImageNet top-1 78.5% (official: error 21.5%)",
            "ImageNet val, resize 256, centre crop 224 (official README and tools/valid.py)",
            41_232_680, "MIT (HRNet-Image-Classification repository)",
            "the official ImageNet file (the name HigherHRNet's README expects) as mirrored "
            "by OpenMMLab for mmpose's pretrained=",
        ),
    )
}  # fmt: skip
DEFAULT_POSE = "higherhrnet-w32-512"


def cache_dir() -> Path:
    """``$HRPOSE_CACHE``, default ``~/.cache/hrpose``."""
    return Path(os.environ.get("HRPOSE_CACHE") or Path.home() / ".cache" / "hrpose")


def is_url(weights: str | Path) -> bool:
    return str(weights).startswith(("http://", "https://"))


def is_remote(weights: str | Path) -> bool:
    """True for what ``resolve_weights`` may download: a URL or a registered name that is not
    also a local file."""
    s = str(weights)
    return is_url(s) or (s in REGISTRY and not Path(s).exists())


def cached_path(url: str) -> Path:
    """Where the file of ``url`` is (or will be) kept: ``weights/<key>/<file name>``, the key a
    short hash of the URL (files of one name from different URLs differ), the query string
    left out (a signed URL's changing token names the same file)."""
    base = url.split("?", 1)[0].split("#", 1)[0]
    key = hashlib.sha256(base.encode()).hexdigest()[:12]
    return cache_dir() / "weights" / key / base.rsplit("/", 1)[-1]


def resolve_weights(weights: str | Path, *, progress: bool = True, quiet: bool = False) -> Path:
    """A local file for ``weights``: a path as is, else the verified cached download of a URL
    or a registered name (downloaded on first use, saying so on stderr)."""
    s = str(weights)
    if Path(s).is_file():
        return Path(s)
    entry = REGISTRY.get(s)
    if entry is not None:
        url, sha256, what = entry.url, entry.expected_sha256, f"{entry.name} ({entry.model})"
    elif is_url(s):
        url, sha256, what = s, sha256_from_name(s), s
    else:
        close = difflib.get_close_matches(s, REGISTRY, n=2)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise WeightsError(
            f"weights {s!r}: no such file, not an http(s) URL and not a registered name.{hint} "
            f"Registered: {', '.join(REGISTRY)} (see `hrpose weights list`)."
        )
    dest = cached_path(url)
    if dest.is_file():
        problem = file_problem(dest, sha256=sha256)
        if problem is None:
            return dest
        dest.unlink()  # a corrupt file is never kept
        if not quiet:
            print(f"{dest}: {problem}; deleted, downloading it again", file=sys.stderr)
    if not quiet:
        check = f"sha256 {sha256}{'' if sha256 and len(sha256) == 64 else '...'}"
        print(
            f"downloading {what} from {url} to {dest} (first use; "
            f"{check if sha256 else 'no hash to check'})",
            file=sys.stderr,
        )
    try:
        return download(url, dest, sha256=sha256, progress=progress and not quiet,
                        retry=WEIGHTS_RETRY)  # fmt: skip
    except ChecksumError:
        raise
    except DownloadError as e:
        raise DownloadError(
            f"{e}. Without network access, fetch {url} on another machine and put the file at "
            f"{dest} (set HRPOSE_CACHE to use another cache folder); it is then used offline."
        ) from e
