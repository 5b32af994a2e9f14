"""Each training setting is defined once: the config's run sections are engine/settings.py's
classes, and no other class in the package redefines their fields (a second copy drifts: it had
other defaults and names, e.g. max_epochs 1 vs 300, use_ddp vs use_DDP, base_lr vs lr)."""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

import pytest

from hrpose.config import schema
from hrpose.engine import settings

SRC = Path(__file__).resolve().parents[1] / "src" / "hrpose"
SECTIONS = {
    "setup": settings.SetupSettings,
    "trainer": settings.TrainerSettings,
    "optimizer": settings.OptimizerSettings,
    "scheduler": settings.SchedulerSettings,
    "tracking": settings.TrackingSettings,
}


@pytest.mark.parametrize("task", sorted(schema.TASKS))
def test_config_sections_are_the_engine_classes(task: str) -> None:
    hints = typing.get_type_hints(schema.TASKS[task])
    for section, cls in SECTIONS.items():
        assert hints[section] is cls, f"{task}.{section} is {hints[section]}, not {cls}"
        assert type(getattr(schema.TASKS[task](), section)) is cls
    fit = typing.get_type_hints(settings.FitSettings)
    assert all(fit[section] is cls for section, cls in SECTIONS.items())


def test_old_config_names_are_the_same_classes() -> None:
    assert schema.SetupConfig is settings.SetupSettings
    assert schema.TrainerConfig is settings.TrainerSettings
    assert schema.OptimizerConfig is settings.OptimizerSettings
    assert schema.SchedulerConfig is settings.SchedulerSettings
    assert schema.TrackingConfig is settings.TrackingSettings


def _annotated_fields(tree: ast.Module) -> dict[str, set[str]]:
    """Class name -> its annotated field names, for every class in a module."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            names = {
                s.target.id
                for s in node.body
                if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            }
            if names:
                out[node.name] = names
    return out


def _norm(name: str) -> str:
    """Spelling variants a copy would use: use_DDP/use_ddp, min_lr_factor/min_factor."""
    return name.lower().replace("_lr_", "_").removeprefix("base_")


def test_no_second_definition_of_a_training_setting() -> None:
    """No class outside engine/settings.py shares 3 or more fields with a run section."""
    sections = {
        cls.__name__: {_norm(f.name) for f in dataclasses.fields(cls)} for cls in SECTIONS.values()
    }
    home = SRC / "engine" / "settings.py"
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        if path == home:
            continue
        for cls, names in _annotated_fields(ast.parse(path.read_text())).items():
            for section, fields in sections.items():
                shared = sorted(fields & {_norm(n) for n in names})
                if len(shared) >= 3:
                    rel = path.relative_to(SRC)
                    problems.append(f"{rel}:{cls} redefines {section} fields {shared}")
    assert not problems, "\n".join(problems)


def test_the_check_would_see_the_old_copy() -> None:
    """The old engine-side copy of the trainer section (renamed fields) is caught."""
    old = ast.parse(
        "class LoopSettings:\n    accelerator: str = 'auto'\n    max_epochs: int = 1\n"
        "    use_ddp: bool = False\n    grad_clip: float | None = None\n"
    )
    names = {_norm(n) for n in _annotated_fields(old)["LoopSettings"]}
    trainer = {_norm(f.name) for f in dataclasses.fields(settings.TrainerSettings)}
    assert len(names & trainer) >= 3
