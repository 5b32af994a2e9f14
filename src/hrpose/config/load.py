"""YAML + ``--section.field=value`` overrides -> typed config dataclasses.

Values are converted to each field's declared type, so ``--optimizer.lr=1e-3`` is a float (YAML
alone would read ``1e-3`` as a string), ``--scheduler.milestones=[30,60]`` a list and
``--setup.ckpt_path=None`` a None. An unknown key is an error naming the closest valid keys.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

_NONE = {"none", "null", "~"}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


def all_keys(cls: type) -> list[str]:
    """Every dotted leaf key of a config dataclass, e.g. ``trainer.max_epochs``."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys += [f"{f.name}.{k}" for k in all_keys(tp)]
        else:
            keys.append(f.name)
    return keys


def field_docs(cls: type, prefix: str = "") -> dict[str, str]:
    """Dotted key -> the field's one-line docstring (read from the class source)."""
    docs: dict[str, str] = {}
    for klass in reversed([c for c in cls.__mro__ if dataclasses.is_dataclass(c)]):
        body = ast.parse(inspect.getsource(klass)).body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[prefix + node.target.id] = nxt.value.value.strip()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            docs.update(field_docs(hints[f.name], f"{prefix}{f.name}."))
    return docs


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (from YAML or a command-line string) to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            if type(None) in args:
                return None
            raise ConfigError(f"{key} may not be None")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError("; ".join(errors))
    if origin in (list, tuple):
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        if isinstance(value, str):
            text = value.strip()
            value = yaml.safe_load(text) if text.startswith("[") else text.split(",")
            if value is None:
                value = []
        if not isinstance(value, list | tuple):
            value = [value]
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if value is None:
        raise ConfigError(f"{key} may not be None")
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"{key} expects true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} expects an integer, got {value!r}")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise ConfigError(f"{key} expects an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} expects a number, got {value!r}")
        try:
            return float(str(value).strip()) if isinstance(value, str) else float(value)
        except ValueError:
            raise ConfigError(f"{key} expects a number like 1e-3, got {value!r}") from None
    if tp is str:
        if isinstance(value, dict | list):
            raise ConfigError(f"{key} expects a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None, path: str = "config") -> T:
    """Build ``cls`` from a nested dict, converting each value to its field's type.

    Missing keys keep their defaults; unknown keys raise ConfigError (see ``load_config`` for
    close-match hints).
    """
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(names), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown config key {path}.{unknown[0]}.{hint}")
    kwargs = {}
    for name, value in data.items():
        tp, key = hints[name], f"{path}.{name}"
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, value, key)
        else:
            kwargs[name] = _coerce(value, tp, key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None


def _deep_update(base: dict, new: dict) -> dict:
    out = dict(base)
    for k, v in new.items():
        out[k] = (
            _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def parse_overrides(argv: list[str]) -> dict[str, Any]:
    """``['--a.b=1', '--c', 'x']`` -> nested ``{'a': {'b': '1'}, 'c': 'x'}`` (values still text)."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"expected --section.field=value, got {arg!r}")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            key, value = arg[2:], argv[i + 1]
            i += 1
        else:
            raise ConfigError(f"{arg} needs a value: {arg}=VALUE")
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r} conflicts with another override")
        node[parts[-1]] = value
        i += 1
    return out


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] = ()) -> T:
    """Read YAML ``path`` (optional), apply ``--section.field=value`` overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found (see configs/ for examples)")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        _check_keys(cls, data, str(path))
    over = parse_overrides(list(overrides))
    _check_keys(cls, over, "the command line")
    # Start from the full default tree so a partial section keeps the task's own defaults.
    merged = _deep_update(_deep_update(to_dict(cls()), data), over)
    return from_dict(cls, merged, "config")


def _check_keys(
    cls: type, data: dict, where: str, prefix: str = "", root: type | None = None
) -> None:
    """Raise for any key not in the schema, naming close matches and where it came from."""
    root = root or cls
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        dotted = prefix + str(key)
        if key not in names:
            close = difflib.get_close_matches(dotted, all_keys(root), n=3, cutoff=0.5)
            if not close:
                leaf = dotted.rsplit(".", 1)[-1]
                by_leaf: dict[str, list[str]] = {}
                for k in all_keys(root):
                    by_leaf.setdefault(k.rsplit(".", 1)[-1], []).append(k)
                close = [
                    k
                    for m in difflib.get_close_matches(leaf, list(by_leaf), n=3)
                    for k in by_leaf[m]
                ][:3]
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown config key {dotted!r} in {where}.{hint}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if isinstance(value, dict):
                _check_keys(tp, value, where, dotted + ".", root)
            elif value is not None:
                raise ConfigError(f"{dotted} is a section: set its fields, e.g. --{dotted}.FIELD=")
        elif isinstance(value, dict):
            raise ConfigError(f"{dotted} is a single value, not a section")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Config dataclass -> plain nested dict of YAML types (tuples become lists)."""
    return _plain(dataclasses.asdict(cfg))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def given_values(path: str | Path | None, overrides: list[str], section: str) -> dict[str, Any]:
    """The fields of one section that a YAML file and ``--section.field=value`` overrides set
    explicitly (values as given: YAML types or text), for precedence over a model's record."""
    given: dict[str, Any] = {}
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        given.update((data.get(section) or {}) if isinstance(data, dict) else {})
    given.update(parse_overrides(list(overrides)).get(section) or {})
    return given


def to_yaml(cfg: Any) -> str:
    """Config dataclass -> YAML text that loads back to an equal config."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def help_text(cls: type) -> str:
    """One line per key: ``--key=DEFAULT  docstring``."""
    instance = cls()
    defaults = {key: functools.reduce(getattr, key.split("."), instance) for key in all_keys(cls)}
    docs = field_docs(cls)
    width = max(len(k) for k in defaults) + 3
    lines = []
    for key, default in defaults.items():
        lines.append(f"  --{key + '=':<{width}} {default!s:<14} {docs.get(key, '')}")
    return "\n".join(lines)
