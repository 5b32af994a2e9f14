"""`hrpose eval pose|classifier`: dispatch to the task's evaluation command."""

from __future__ import annotations

import importlib
import sys

_TASKS = {"pose": "hrpose.cli.eval_pose", "classifier": "hrpose.cli.eval_classifier"}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in _TASKS:
        print("usage: hrpose eval {pose,classifier} [options]  (--help for each)", file=sys.stderr)
        return 2
    return int(importlib.import_module(_TASKS[argv[0]]).main(argv[1:]) or 0)
