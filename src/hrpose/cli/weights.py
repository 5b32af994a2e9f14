"""`hrpose weights list | download NAME`: the registered pretrained weights and their cache."""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hrpose weights",
        description="Registered pretrained weights. Any --weights option also takes these names "
        "or an http(s) URL: the file is downloaded once into $HRPOSE_CACHE (default "
        "~/.cache/hrpose), checked against its SHA-256, and used offline afterwards.",
    )
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="each name with its source, reported accuracy, size and licence")
    d = sub.add_parser("download", help="download (or find in the cache) and print the path")
    d.add_argument("name", help="a registered name or an http(s) URL")
    return p


def main(argv: list[str]) -> int:
    from hrpose.hub import DEFAULT_POSE, REGISTRY, cache_dir, cached_path, resolve_weights
    from hrpose.models.weights import WeightsError
    from hrpose.prepare.download import DownloadError

    args = _parser().parse_args(argv)
    if args.action == "list":
        for name, w in REGISTRY.items():
            default = "  [default for hrpose predict]" if name == DEFAULT_POSE else ""
            cached = "cached" if cached_path(w.url).is_file() else "not downloaded"
            print(f"{name}{default}")
            print(f"  {w.model} ({w.kind}), input {w.input_size}; {w.metric}")
            print(f"  protocol: {w.protocol}")
            print(f"  size ~{w.approx_size_mb:.0f} MB; licence: {w.licence}; {cached}")
            print(f"  source: {w.source}")
            print(f"  url: {w.url}")
        print(f"cache: {cache_dir() / 'weights'} (HRPOSE_CACHE); figures are the sources', "
              "not measured by hrpose")  # fmt: skip
        return 0
    try:
        path = resolve_weights(args.name)
    except (WeightsError, DownloadError) as e:
        print(f"hrpose weights: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0
