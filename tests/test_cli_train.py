"""`hrpose train`: config files, typed overrides and clear errors before any training starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hrpose.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: p.name)
def test_bundled_configs_load(path: Path, capsys) -> None:
    task = "classifier" if "classifier" in path.parts else "pose"
    assert main(["train", task, "--config", str(path), "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["trainer"]["max_epochs"] >= 1


def test_official_recipe_values(capsys) -> None:
    main(["train", "pose", "--config", str(CONFIGS / "pose" / "w32_512.yaml"), "--print-config"])
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["optimizer"] == {**cfg["optimizer"], "name": "adam", "lr": 1e-3}
    assert cfg["scheduler"]["milestones"] == [200, 260] and cfg["dataloader"]["batch_size"] == 12


def test_seed_readme_overrides(capsys) -> None:
    argv = ["train", "pose", "--setup.ckpt_path=None", "--trainer.use_DDP=False",
            "--setup.pretrained_ckpt_path=pretrained/hrnet_32.pt", "--print-config"]  # fmt: skip
    assert main(argv) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["setup"]["pretrained_ckpt_path"] == "pretrained/hrnet_32.pt"
    assert cfg["setup"]["ckpt_path"] is None and cfg["trainer"]["use_DDP"] is False


def test_errors(capsys) -> None:
    assert main(["train", "pose", "--trainer.max_epoch=3"]) == 2
    assert "Did you mean: trainer.max_epochs" in capsys.readouterr().err
    assert main(["train", "posse"]) == 2
    assert main(["train", "pose", "--help"]) == 0
    assert "--optimizer.lr=" in capsys.readouterr().out


def test_fit_settings_carry_the_config_values() -> None:
    """cli/ turns the config into the loop's values: every trainer field reaches the loop (but
    limit_val_batches, which the tasks take), and the schedule is the config's LR schedule."""
    from dataclasses import fields

    from hrpose.cli.train import fit_settings
    from hrpose.config.load import load_config, to_dict
    from hrpose.config.schema import PoseTrainConfig, TrainerConfig
    from hrpose.engine.optim import lr_factor
    from hrpose.engine.settings import LoopSettings

    cfg = load_config(PoseTrainConfig, overrides=[
        "--trainer.use_DDP=True", "--trainer.amp=bf16", "--trainer.grad_clip=2.5",
        "--setup.ckpt_path=x/last.pt", "--optimizer.lr=0.02", "--optimizer.betas=[0.8,0.9]",
        "--scheduler.warmup_epochs=1", "--tracking.log_images=False",
    ])  # fmt: skip
    s = fit_settings(cfg)
    trainer = {f.name.replace("use_DDP", "use_ddp") for f in fields(TrainerConfig)}
    assert {f.name for f in fields(LoopSettings)} == trainer - {"limit_val_batches"}
    assert (s.loop.use_ddp, s.loop.amp, s.loop.grad_clip) == (True, "bf16", 2.5)
    assert s.run.ckpt_path == "x/last.pt" and s.run.experiment_name == "pose"
    assert s.optimizer.betas == (0.8, 0.9) and not s.tracking.log_images
    expected = 0.02 * lr_factor(0.5, schedule="multistep", max_epochs=300, milestones=[200, 260],
                                warmup_epochs=1.0)  # fmt: skip
    assert s.schedule(0.5) == pytest.approx(expected) and s.schedule(270.0) == pytest.approx(2e-4)
    assert s.config == to_dict(cfg)
