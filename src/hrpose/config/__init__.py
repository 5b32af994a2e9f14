"""Typed configuration: dataclass schema (pure) and the YAML/command-line loader."""

from hrpose.config.schema import ClassifierTrainConfig, PoseTrainConfig

__all__ = ["ClassifierTrainConfig", "PoseTrainConfig"]
