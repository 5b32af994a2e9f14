"""The package's imports point down the layers that README.md's "Package layout" table draws.

The table is the one definition: this test parses it out of README.md (columns ``layer``,
``module``, ``holds``), so the README cannot drift from what is checked. A row whose module does
not exist (yet) is fine; a module under src/hrpose that no row covers is a failure. Rules:

- a module imports only from its own layer or lower (longest table prefix gives the layer);
- at L1, the pure-compute packages in ``SIBLINGS`` do not import each other;
- ``config`` is imported by cli/ only (the config tree becomes plain values there).

Checked on the source text (``ast``), so nothing is imported.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "hrpose"
README = ROOT / "README.md"

# Pure-compute packages at L1 that must not import one another (README: "Package layout").
SIBLINGS = {"models", "losses", "decode", "data", "viz", "evaluation"}
# Packages only cli/ (and the package itself) may import: the config tree becomes values and
# objects in cli/ alone, so engine/, data/ etc. take plain values (STYLE.md).
CLI_ONLY = {"config"}
# The package root (src/hrpose/__init__.py) in the table and in this test.
ROOT_NAME = "hrpose"


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def parse_layers(text: str) -> dict[str, int]:
    """The README's layer table: module (dotted, relative to hrpose; ``hrpose`` = the root) ->
    layer number. Raises ValueError when the table is missing or malformed."""
    lines = text.splitlines()
    tables = []
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("|"):
            continue
        header = [c.lower() for c in _cells(line)]
        divider = lines[i + 1] if i + 1 < len(lines) else ""
        is_divider = "-" in divider and set(divider.replace("|", "").strip()) <= set("-: ")
        if "layer" in header and "module" in header and is_divider:
            tables.append((i, header))
    if len(tables) != 1:
        raise ValueError(
            f"README.md must hold exactly one table with 'layer' and 'module' columns, "
            f"found {len(tables)}"
        )
    start, header = tables[0]
    col_layer, col_module = header.index("layer"), header.index("module")
    layers: dict[str, int] = {}
    for line in lines[start + 2 :]:
        if not line.lstrip().startswith("|"):
            break
        cells = _cells(line)
        if len(cells) != len(header):
            raise ValueError(f"layer table row has {len(cells)} cells, not {len(header)}: {line}")
        m = re.fullmatch(r"L(\d+)\b.*", cells[col_layer])
        if not m:
            raise ValueError(f"layer table row without an L<n> layer: {line}")
        names = re.findall(r"`([^`]+)`", cells[col_module])
        if not names:
            raise ValueError(f"layer table row without a `module`: {line}")
        for name in names:
            mod = name.strip().removesuffix("/").removesuffix(".py").replace("/", ".")
            mod = mod.removeprefix("hrpose.")
            if mod in ("__init__", "hrpose.__init__"):
                mod = ROOT_NAME
            if mod in layers:
                raise ValueError(f"module {mod!r} has two rows in the layer table")
            layers[mod] = int(m.group(1))
    if not layers:
        raise ValueError("the layer table in README.md has no rows")
    return layers


def _layer(layers: dict[str, int], mod: str) -> int | None:
    """Layer of a dotted module: its longest prefix in the table (the root only as itself)."""
    if mod == ROOT_NAME:
        return layers.get(ROOT_NAME)
    best = None
    for prefix, layer in layers.items():
        covers = prefix != ROOT_NAME and (mod == prefix or mod.startswith(prefix + "."))
        if covers and (best is None or len(prefix) > len(best[0])):
            best = (prefix, layer)
    return None if best is None else best[1]


def _is_module(dotted: str) -> bool:
    path = SRC.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> list[str]:
    """hrpose modules a file imports (dotted, relative to hrpose; the root as ``hrpose``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == ROOT_NAME:
                base = ""
            elif node.module.startswith(ROOT_NAME + "."):
                base = node.module[len(ROOT_NAME) + 1 :]
            else:
                continue
            for alias in node.names:  # `from hrpose.data import geometry` imports data.geometry
                sub = f"{base}.{alias.name}" if base else alias.name
                out.append(sub if _is_module(sub) else (base or ROOT_NAME))
        elif isinstance(node, ast.Import):
            out += [
                a.name[len(ROOT_NAME) + 1 :] if a.name != ROOT_NAME else ROOT_NAME
                for a in node.names
                if a.name == ROOT_NAME or a.name.startswith(ROOT_NAME + ".")
            ]
    return out


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = [p for p in path.relative_to(SRC).with_suffix("").parts if p != "__init__"]
        mods[".".join(parts) or ROOT_NAME] = path
    return mods


def check(layers: dict[str, int], modules: dict[str, Path] | None = None) -> list[str]:
    """Every problem of the source tree (or of ``modules``: dotted name -> file) against a layer
    table, one line each."""
    problems = []
    for mod, path in (_modules() if modules is None else modules).items():
        layer = _layer(layers, mod)
        if layer is None:
            problems.append(f"{mod} ({path.name}) is in no row of README.md's layer table")
            continue
        top = mod.split(".")[0]
        for target in _imports(path):
            tlayer = _layer(layers, target)
            if tlayer is None:
                continue  # reported as that module's own problem (or it does not exist)
            ttop = target.split(".")[0]
            if tlayer > layer:
                problems.append(f"{mod} (L{layer}) imports {target} (L{tlayer})")
            if layer == 1 and tlayer == 1 and top != ttop and {top, ttop} <= SIBLINGS:
                problems.append(f"{mod} imports sibling package {target}")
            if ttop in CLI_ONLY and top not in ("cli", ttop):
                problems.append(f"{mod} imports {target}: only cli/ reads the config tree")
    return problems


def test_readme_has_the_layer_table():
    layers = parse_layers(README.read_text())
    assert {"skeleton", "models", "decode", "hub", "predict", "engine", "config", "cli"} <= set(
        layers
    )


def test_every_module_has_a_row():
    layers = parse_layers(README.read_text())
    missing = [m for m in _modules() if _layer(layers, m) is None]
    assert not missing, f"modules in no row of README.md's layer table: {missing}"


def test_imports_point_down():
    problems = check(parse_layers(README.read_text()))
    assert not problems, "\n".join(problems)


# The checker itself, on small tables.

TABLE = """\
# x

| layer | module | holds |
|---|---|---|
| L0 | `skeleton` | names |
| L1 pure | `models/` | nets |
| L4 | `predict`, `hrpose.export` | inference |

after
"""


def test_parse_layers_reads_the_table():
    assert parse_layers(TABLE) == {"skeleton": 0, "models": 1, "predict": 4, "export": 4}


def test_parse_layers_fails_without_a_table():
    with pytest.raises(ValueError, match="exactly one table"):
        parse_layers("# README\n\nno table here\n")


def test_parse_layers_fails_on_a_row_without_layer():
    with pytest.raises(ValueError, match="L<n>"):
        parse_layers(TABLE.replace("| L0 |", "| zero |"))


def test_parse_layers_fails_on_a_duplicate_row():
    with pytest.raises(ValueError, match="two rows"):
        parse_layers(TABLE.replace("`predict`, ", "`skeleton`, "))


def test_a_module_in_no_row_is_a_problem():
    problems = check({"skeleton": 0})
    assert any("decode" in p and "no row" in p for p in problems)


def test_an_upward_import_is_a_problem():
    layers = {**parse_layers(README.read_text()), "predict": 0}  # predict imports decode (L1)
    assert any(p.startswith("predict (L0) imports decode") for p in check(layers))


def test_imports_are_resolved_to_modules(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(
        "from hrpose import __version__\n"
        "from hrpose.data import targets, DatasetError\n"
        "import hrpose.decode.group\n"
        "def f():\n    from hrpose.predict import Predictor\n"
        "import numpy\n"
    )
    assert sorted(_imports(src)) == ["data", "data.targets", "decode.group", "hrpose", "predict"]


def test_sibling_and_config_imports_are_problems(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from hrpose.decode import decode\nfrom hrpose.config import load\n")
    layers = parse_layers(README.read_text())
    problems = check(layers, {"models.bad": bad, "cli.ok": bad})
    assert "models.bad imports sibling package decode" in problems
    assert any(p.startswith("models.bad imports config") for p in problems)
    assert not any(p.startswith("cli.ok") for p in problems)
