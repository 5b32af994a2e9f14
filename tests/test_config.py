"""Config: YAML + typed overrides, unknown keys with close matches, round trip."""

from __future__ import annotations

import pytest

from hrpose.config.load import ConfigError, help_text, load_config, to_dict, to_yaml
from hrpose.config.schema import ClassifierTrainConfig, PoseTrainConfig
from hrpose.engine.tracking import flatten


def test_defaults_follow_official_recipes() -> None:
    pose = PoseTrainConfig()
    assert (pose.optimizer.name, pose.optimizer.lr, pose.trainer.max_epochs) == ("adam", 1e-3, 300)
    assert pose.scheduler.milestones == [200, 260] and pose.dataloader.batch_size == 12
    cls = ClassifierTrainConfig()
    assert (cls.optimizer.name, cls.optimizer.lr, cls.optimizer.nesterov) == ("sgd", 0.05, True)
    assert cls.optimizer.weight_decay == 1e-4 and cls.scheduler.milestones == [30, 60, 90]


def test_typed_overrides() -> None:
    cfg = load_config(
        PoseTrainConfig,
        overrides=[
            "--optimizer.lr=1e-3",
            "--scheduler.milestones=[30,60]",
            "--setup.ckpt_path=None",
            "--trainer.use_DDP=False",
            "--setup.pretrained_ckpt_path=pretrained/hrnet_32.pt",
            "--dataloader.train_ds.root",
            "/data/coco",
            "--trainer.grad_clip=1",
        ],
    )
    assert isinstance(cfg.optimizer.lr, float) and cfg.optimizer.lr == 1e-3
    assert cfg.scheduler.milestones == [30, 60]
    assert cfg.setup.ckpt_path is None and cfg.trainer.use_DDP is False
    assert cfg.setup.pretrained_ckpt_path == "pretrained/hrnet_32.pt"
    assert cfg.dataloader.train_ds.root == "/data/coco"
    assert cfg.trainer.grad_clip == 1.0


def test_unknown_key_suggests_close_names(tmp_path) -> None:
    with pytest.raises(ConfigError, match="optimizer.lr"):
        load_config(PoseTrainConfig, overrides=["--optimizer.lrr=1"])
    with pytest.raises(ConfigError, match="trainer.max_epochs"):
        load_config(PoseTrainConfig, overrides=["--max_epoch=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_epoch: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*trainer.max_epochs"):
        load_config(PoseTrainConfig, bad)


def test_bad_values_are_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="number"):
        load_config(PoseTrainConfig, overrides=["--optimizer.lr=fast"])
    with pytest.raises(ConfigError, match="multiple of 32"):
        load_config(PoseTrainConfig, overrides=["--data.input_size=500"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(PoseTrainConfig, tmp_path / "absent.yaml")


def test_yaml_round_trip(tmp_path) -> None:
    cfg = load_config(PoseTrainConfig, overrides=["--model.width=16", "--inference.scales=[2,1]"])
    path = tmp_path / "c.yaml"
    path.write_text(to_yaml(cfg))
    again = load_config(PoseTrainConfig, path)
    assert to_dict(again) == to_dict(cfg) and again.inference.scales == (2.0, 1.0)
    assert flatten(to_dict(cfg))["model.width"] == 16
    assert "--optimizer.lr=" in help_text(PoseTrainConfig)


def test_defaults_follow_the_official_recipes() -> None:
    """Data roots data/COCO and data/ImageNet; the classifier's SGD decays every parameter."""
    from torch import nn

    from hrpose.config.schema import ClassifierTrainConfig
    from hrpose.engine.optim import param_groups

    pose, cls = PoseTrainConfig(), ClassifierTrainConfig()
    assert pose.dataloader.train_ds.root == pose.dataloader.val_ds.root == "data/COCO"
    assert cls.dataloader.train_ds.root == cls.dataloader.val_ds.root == "data/ImageNet"
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    opt = cls.optimizer
    (group,) = param_groups(model, opt.weight_decay, opt.no_decay_norm_bias)
    assert len(group["params"]) == 4 and group["weight_decay"] == 1e-4
