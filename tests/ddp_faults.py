"""Run by tests/test_engine_ddp_faults.py under torchrun: a toy task on gloo whose faults are real.

argv: results_dir, then overrides. Env: TOY_KILL_RANK / TOY_KILL_AT (that rank SIGKILLs itself
before its TOY_KILL_AT-th step, on torchrun's first attempt only); TOY_NAN_RANK (that rank's
3rd loss is NaN). Every step appends its loss
(repr, exact) to <results_dir>/losses-rank<R>.txt, a line "attempt loss".
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from pathlib import Path

import torch
from torch import nn

from hrpose.cli.train import fit_settings
from hrpose.config.load import load_config
from hrpose.config.schema import ClassifierTrainConfig
from hrpose.data.loaders import build_loader
from hrpose.engine.loop import StepOutput, TaskParts, fit


def build(device, info):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 3, (64,), generator=g)
    loader = build_loader(torch.utils.data.TensorDataset(x, y), 4, shuffle=True, seed=3)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    log = Path(sys.argv[1]) / f"losses-rank{info.rank}.txt"
    calls = {"n": 0}

    def step(m, batch, ctx):
        calls["n"] += 1
        if (attempt == "0" and os.environ.get("TOY_KILL_RANK") == str(info.rank)
                and calls["n"] == int(os.environ["TOY_KILL_AT"])):  # fmt: skip
            os.kill(os.getpid(), signal.SIGKILL)  # a real crash: no handler, no cleanup
        xb, yb = ctx.to_device(batch)
        loss = nn.functional.cross_entropy(m(xb), yb)
        if os.environ.get("TOY_NAN_RANK") == str(info.rank) and calls["n"] == 3:
            loss = loss * float("nan")  # this rank alone: every rank must skip the step
        with log.open("a") as f:
            f.write(f"{attempt} {float(loss.detach())!r}\n")
        return StepOutput(loss, {}, len(xb))

    def validate(m, ctx):
        return {"top1": float((m(x).argmax(1) == y).float().mean()) * 100}

    return TaskParts(model, loader, step, validate, "top1")


if __name__ == "__main__":
    faulthandler.dump_traceback_later(45, exit=True)  # a hang shows where, then ends the test
    torch.set_num_threads(1)
    cfg = load_config(
        ClassifierTrainConfig,
        overrides=[f"--setup.results_dir={sys.argv[1]}", "--trainer.max_epochs=2",
                   "--trainer.progress=False", "--tracking.mlflow=False",
                   "--trainer.use_DDP=True", "--trainer.ddp_timeout_s=60",
                   "--optimizer.lr=0.1", *sys.argv[2:]],
    )  # fmt: skip
    rank = os.environ["RANK"]
    try:
        res = fit(fit_settings(cfg), build, "classifier")
    except Exception as e:
        print(f"rank {rank} stopped: {e}", flush=True)
        sys.exit(1)
    print(f"rank {rank} done epochs={res.epochs_done} run={res.run_dir}", flush=True)
