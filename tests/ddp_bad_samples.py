"""Run by tests/test_data_bad_samples.py under torchrun (2 ranks, gloo): each rank meets its
own unreadable files; both must know the same set and stop at the same step."""

from __future__ import annotations

import json
import os
import sys

import torch

from hrpose.engine import distributed as dist_utils
from hrpose.engine.bad_samples import BadSampleCounter, TooManyBadSamples


def main() -> None:
    info = dist_utils.init_distributed(True, torch.device("cpu"), timeout_s=30)
    counter = BadSampleCounter(num_files=100, max_fraction=0.03)  # 3 files allowed
    steps = [  # what each rank's batches skipped, step by step
        {0: ["a.jpg"], 1: []},
        {0: [], 1: ["b.jpg", "a.jpg"]},  # a.jpg again (on the other rank): counted once
        {0: [], 1: []},
        {0: ["c.jpg"], 1: ["c.jpg"]},
        {0: [], 1: ["d.jpg"]},  # the 4th file, met on rank 1 only: both ranks stop here
        {0: ["e.jpg"], 1: []},
    ]
    stopped, message = None, ""
    for i, step in enumerate(steps):
        try:
            counter.update(step[info.rank])
        except TooManyBadSamples as e:
            stopped, message = i, str(e)
            break
    line = "RESULT " + json.dumps({"rank": info.rank, "files": list(counter.files),
                                   "stopped": stopped, "message": message}) + "\n"  # fmt: skip
    # one write of the whole line: both ranks share the pipe, and print's separate write of the
    # newline let the other rank's line land between (seen once in CI)
    os.write(sys.stdout.fileno(), line.encode())
    dist_utils.cleanup()


if __name__ == "__main__":
    main()
