"""Run by tests/test_engine_ddp.py under torchrun: the toy task trained with DDP on gloo."""

from __future__ import annotations

import os
import sys

import torch
from torch import nn

from hrpose.cli.train import fit_settings
from hrpose.config.load import load_config
from hrpose.config.schema import ClassifierTrainConfig
from hrpose.engine.loop import StepOutput, TaskParts, fit


def build(device, info):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 3, (64,), generator=g)
    data = torch.utils.data.TensorDataset(x, y)
    sampler = torch.utils.data.DistributedSampler(data, info.world_size, info.rank, seed=0)
    loader = torch.utils.data.DataLoader(data, batch_size=8, sampler=sampler)

    def step(m, batch, ctx):
        if os.environ.get("TOY_FAIL_RANK") == str(info.rank):
            raise RuntimeError(f"rank {info.rank} fails on purpose")
        xb, yb = ctx.to_device(batch)
        loss = nn.functional.cross_entropy(m(xb), yb)
        return StepOutput(loss, {}, len(xb))

    def validate(m, ctx):
        return {"top1": float((m(x).argmax(1) == y).float().mean()) * 100}

    return TaskParts(model, loader, step, validate, "top1")


if __name__ == "__main__":
    cfg = load_config(
        ClassifierTrainConfig,
        overrides=[f"--setup.results_dir={sys.argv[1]}", "--setup.run_name=ddp",
                   "--trainer.max_epochs=2", "--trainer.progress=False", "--tracking.mlflow=False",
                   "--trainer.use_DDP=True", "--trainer.sync_batchnorm=True",
                   "--trainer.ddp_timeout_s=60"],
    )  # fmt: skip
    res = fit(fit_settings(cfg), build, "classifier")
    print(f"rank {os.environ['RANK']} done epochs={res.epochs_done}")
