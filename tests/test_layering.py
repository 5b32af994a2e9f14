"""The package's imports point down the layers (see STYLE.md): checked on the source text."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "hrpose"

# Module (dotted, relative to hrpose) -> layer. Longest prefix wins.
LAYERS = {
    "skeleton": 0,
    "structures": 0,
    "affine": 0,
    "normalization": 0,
    "config.schema": 0,
    "models": 1,
    "losses": 1,
    "decode": 1,
    "data.geometry": 1,
    "data.augment": 1,
    "data.targets": 1,
    "evaluation.coco_results": 1,
    "evaluation.classification": 1,
    "viz.draw": 1,
    "tracking": 1,
    "config": 2,
    "data": 2,
    "engine": 2,
    "predict": 2,
    "export": 2,
    "hub": 2,
    "evaluation": 2,
    "prepare": 2,
    "viz": 2,
    "serve": 3,
    "cli": 4,
}
# Packages at layer 1 whose modules must not import each other.
SIBLINGS = {"models", "losses", "decode", "data", "viz", "evaluation"}
# Packages only cli/ (and the package itself) may import: the config tree becomes values and
# objects in cli/ alone, so engine/, data/ etc. take plain values (STYLE.md).
CLI_ONLY = {"config"}


def _layer(mod: str) -> int | None:
    best = None
    for prefix, layer in LAYERS.items():
        if (mod == prefix or mod.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best[0])
        ):
            best = (prefix, layer)
    return None if best is None else best[1]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hrpose."):
            out.append(node.module[len("hrpose.") :])
        elif isinstance(node, ast.Import):
            out += [a.name[len("hrpose.") :] for a in node.names if a.name.startswith("hrpose.")]
    return out


def test_imports_point_down():
    problems = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        if not parts or parts == ["__main__"]:
            continue
        mod = ".".join(parts)
        layer = _layer(mod)
        if layer is None:
            continue
        for target in _imports(path):
            tlayer = _layer(target)
            if tlayer is None:
                continue
            if tlayer > layer:
                problems.append(f"{mod} (L{layer}) imports {target} (L{tlayer})")
            top, ttop = mod.split(".")[0], target.split(".")[0]
            if layer == 1 and tlayer == 1 and top != ttop and {top, ttop} <= SIBLINGS:
                problems.append(f"{mod} imports sibling package {target}")
            if ttop in CLI_ONLY and top not in ("cli", ttop):
                problems.append(f"{mod} imports {target}: only cli/ reads the config tree")
    assert not problems, "\n".join(problems)
