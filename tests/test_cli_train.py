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


def test_fit_settings_are_the_config_sections() -> None:
    """cli/ hands the loop the config's run sections as they are (no field-by-field copy, no
    renaming), and the LR is a function of optimizer.lr, the scheduler and trainer.max_epochs."""
    import functools

    from hrpose.cli.train import fit_settings
    from hrpose.config.load import load_config, to_dict
    from hrpose.config.schema import PoseTrainConfig
    from hrpose.engine.optim import learning_rate, lr_factor

    cfg = load_config(PoseTrainConfig, overrides=[
        "--trainer.use_DDP=True", "--trainer.amp=bf16", "--trainer.grad_clip=2.5",
        "--setup.ckpt_path=x/last.pt", "--optimizer.lr=0.02", "--optimizer.betas=[0.8,0.9]",
        "--scheduler.warmup_epochs=1", "--tracking.log_images=False",
    ])  # fmt: skip
    s = fit_settings(cfg)
    assert (s.setup, s.trainer, s.optimizer, s.scheduler, s.tracking) == (
        cfg.setup, cfg.trainer, cfg.optimizer, cfg.scheduler, cfg.tracking)  # fmt: skip
    assert s.trainer is cfg.trainer and s.scheduler is cfg.scheduler
    assert (s.trainer.use_DDP, s.trainer.amp, s.trainer.grad_clip) == (True, "bf16", 2.5)
    assert s.setup.ckpt_path == "x/last.pt" and s.setup.experiment_name == "pose"
    assert s.optimizer.betas == [0.8, 0.9] and not s.tracking.log_images
    lr_at = functools.partial(learning_rate, lr=s.optimizer.lr, scheduler=s.scheduler,
                              max_epochs=s.trainer.max_epochs)  # fmt: skip
    expected = 0.02 * lr_factor(0.5, schedule="multistep", max_epochs=300, milestones=[200, 260],
                                warmup_epochs=1.0)  # fmt: skip
    assert lr_at(0.5) == pytest.approx(expected) and lr_at(270.0) == pytest.approx(2e-4)
    assert s.config == to_dict(cfg)


@pytest.mark.parametrize("task", ["pose", "classifier"])
def test_help_lists_every_field_with_default_and_docstring(task: str, capsys) -> None:
    """`hrpose train TASK --help`: one line per config key, with the task's default and the
    field's docstring (the run sections' docstrings are read from engine/settings.py)."""
    import functools

    from hrpose.config.load import all_keys, field_docs
    from hrpose.config.schema import TASKS

    assert main(["train", task, "--help"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()
             if line.startswith("  --")}  # fmt: skip
    cls = TASKS[task]
    docs, instance = field_docs(cls), cls()
    for key in all_keys(cls):
        line = lines[f"--{key}="]
        default = functools.reduce(getattr, key.split("."), instance)
        assert docs.get(key), f"{key} has no docstring"
        assert f" {default!s} " in f"{line} " and docs[key].splitlines()[0] in line, line
    assert "--trainer.use_DDP=" in lines and "--scheduler.min_lr_factor=" in lines
    assert "Base learning rate" in lines["--optimizer.lr="]
