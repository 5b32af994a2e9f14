"""`hrpose prepare coco|imagenet|crowdpose`: download (or unpack) and lay out the datasets."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="hrpose prepare", description="Download and lay out data.")
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("coco", help="COCO 2017 keypoints (images + annotations, ~20 GB)")
    c.add_argument("--root", default="data/COCO")
    c.add_argument("--splits", nargs="+", default=["train2017", "val2017"])
    c.add_argument("--base-url", default=None, help="mirror of images.cocodataset.org")
    c.add_argument("--keep-archives", action="store_true")
    c.add_argument(
        "--retries",
        type=int,
        default=8,
        metavar="N",
        help="failed attempts in a row (no new byte) before a download gives up",
    )
    c.add_argument(
        "--retry-delay",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds after the first failure, doubled after each further one",
    )
    c.add_argument(
        "--max-retry-delay",
        type=float,
        default=120.0,
        metavar="S",
        help="longest wait between attempts (defaults: about 4 minutes in all)",
    )
    i = sub.add_parser("imagenet", help="ImageNet class folders from the Kaggle zip")
    i.add_argument("--root", default="data/ImageNet")
    i.add_argument("--archive", default="imagenet-object-localization-challenge.zip")
    cp = sub.add_parser(
        "crowdpose",
        help="CrowdPose from the downloaded images.zip and annotation files (Google Drive)",
    )
    cp.add_argument("sources", nargs="+", help="images.zip, the annotations zip/JSONs/folder")
    cp.add_argument("--root", default="data/CrowdPose")
    args = p.parse_args(argv)
    from hrpose.prepare.download import DownloadError, RetryPolicy

    try:
        if args.what == "coco":
            from hrpose.prepare.coco import BASE_URL, prepare_coco

            try:
                retry = RetryPolicy(args.retries, args.retry_delay, args.max_retry_delay)
            except ValueError as e:
                p.error(f"--retries/--retry-delay/--max-retry-delay: {e}")
            prepare_coco(
                args.root,
                tuple(args.splits),
                args.base_url or BASE_URL,
                keep_archives=args.keep_archives,
                retry=retry,
            )
        elif args.what == "crowdpose":
            from hrpose.prepare.crowdpose import prepare_crowdpose

            prepare_crowdpose(args.root, args.sources)
        else:
            from hrpose.prepare.imagenet import prepare_imagenet

            prepare_imagenet(args.archive, args.root)
    except DownloadError as e:
        print(f"hrpose prepare: {e}", file=sys.stderr)
        return 1
    return 0
