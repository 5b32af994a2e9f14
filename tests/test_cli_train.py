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
