"""`hrpose train pose|classifier [--config FILE] [--section.field=value ...]`."""

from __future__ import annotations

import sys

from hrpose.config.load import ConfigError, help_text, load_config, to_yaml
from hrpose.config.schema import TASKS

USAGE = """usage: hrpose train {pose,classifier} [--config FILE.yaml] [--section.field=value ...]
                     [--print-config] [--help]

Train HigherHRNet on COCO keypoints (pose) or HRNet-W32-C on ImageNet (classifier). Every config
field can be overridden, e.g. --optimizer.lr=1e-3 --trainer.max_epochs=10 --setup.ckpt_path=None.
Resume a run with --setup.ckpt_path=results/<experiment>/<run>/checkpoints/last.pt.
Multi-GPU: torchrun --nproc_per_node=N -m hrpose train pose --trainer.use_DDP=True ...
"""


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    task, rest = argv[0], argv[1:]
    if task not in TASKS:
        print(f"hrpose train: unknown task {task!r}; use pose or classifier\n\n{USAGE}",
              file=sys.stderr)  # fmt: skip
        return 2
    cls = TASKS[task]
    if "-h" in rest or "--help" in rest:
        print(USAGE + "\nconfig fields (default, meaning):\n" + help_text(cls))
        return 0
    config_path, overrides, show = None, [], False
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg == "--config" and i + 1 < len(rest):
            config_path, i = rest[i + 1], i + 2
            continue
        if arg.startswith("--config="):
            config_path = arg.split("=", 1)[1]
        elif arg == "--print-config":
            show = True
        else:
            overrides.append(arg)
        i += 1
    try:
        cfg = load_config(cls, config_path, overrides)
    except ConfigError as e:
        print(f"hrpose train {task}: {e}", file=sys.stderr)
        return 2
    if show:
        print(to_yaml(cfg))
        return 0
    from hrpose.engine.loop import TrainingStopped, fit

    if task == "pose":
        from hrpose.engine.pose_task import build_pose_task as build
    else:
        from hrpose.engine.classifier_task import build_classifier_task as build
    try:
        result = fit(cfg, lambda device, info: build(cfg, device, info), task)
    except (TrainingStopped, FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"hrpose train {task}: {e}", file=sys.stderr)
        return 1
    best = "n/a" if result.best is None else f"{result.best:.4f}"
    print(f"run folder: {result.run_dir}  (epochs done {result.epochs_done}, best "
          f"{'AP' if task == 'pose' else 'top1'} {best}, {result.status.lower()})")  # fmt: skip
    return 0 if result.status == "FINISHED" else 130
