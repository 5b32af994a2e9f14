"""The one command grammar: ``--config FILE``, ``--section.field=value`` and the short flags
users type daily, shared by predict, eval, export and classify (train reads the same form).

The inference flags are derived from :class:`hrpose.structures.InferenceSettings`, the one
definition of those settings: ``--inference.detection_threshold=0.3`` and its shorthand
``--detection-threshold 0.3``; a boolean that defaults to true gets ``--no-<name>``.
Precedence for a model's settings: its record, then the config's ``inference`` section, then
flags, each replacing one field.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import typing
from dataclasses import replace
from pathlib import Path
from typing import Any

from hrpose.config.load import ConfigError, field_docs, from_dict, given_values, load_config
from hrpose.structures import InferenceSettings

# Flags that were renamed or removed -> the form to use now.
RENAMED = {
    "--compile": "--fast",
    "--threshold": "--joint-threshold",
    "--det-threshold": "--detection-threshold",
    "--data.root": "--dataloader.val_ds.root=DIR (or --annotations FILE --images DIR)",
    "--data.split": "--dataloader.val_ds.split=NAME",
    "--inference.det_threshold": "--inference.detection_threshold=VALUE",
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def inference_flag_names() -> dict[str, str]:
    """Field name -> its shorthand flag (``--no-X`` for booleans that default to true)."""
    hints = typing.get_type_hints(InferenceSettings)
    defaults = InferenceSettings()
    out = {}
    for f in dataclasses.fields(InferenceSettings):
        if hints[f.name] is bool:
            out[f.name] = _flag(("no_" if getattr(defaults, f.name) else "") + f.name)
        else:
            out[f.name] = _flag(f.name)
    return out


def add_common(
    p: argparse.ArgumentParser,
    weights_help: str,
    output_default: str | None,
    output_help: str = "output folder",
) -> None:
    """--config, --weights, --output, --device."""
    p.add_argument("--config", help="a YAML config (e.g. configs/pose/*.yaml) whose sections "
                   "this command reads; --section.field=value overrides single fields")  # fmt: skip
    p.add_argument("--weights", help=weights_help)
    p.add_argument("--output", default=output_default, help=output_help)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")


def add_inference_flags(p: argparse.ArgumentParser) -> None:
    """One shorthand per inference setting (dest ``inference_<name>``), default: not given."""
    hints = typing.get_type_hints(InferenceSettings)
    docs = field_docs(InferenceSettings)
    g = p.add_argument_group(
        "inference settings (default: the model's record; also --inference.FIELD=VALUE)"
    )
    for name, flag in inference_flag_names().items():
        tp, dest, doc = hints[name], f"inference_{name}", docs.get(name, "")
        if tp is bool:
            const = not flag.startswith("--no-")
            g.add_argument(
                flag, dest=dest, action="store_const", const=const, default=None, help=doc
            )
        elif typing.get_origin(tp) is tuple:
            g.add_argument(flag, dest=dest, type=float, nargs="+", default=None, help=doc,
                           metavar="S")  # fmt: skip
        else:
            g.add_argument(flag, dest=dest, type=tp, default=None, help=doc, metavar=name.upper())


def parse(
    p: argparse.ArgumentParser, argv: list[str], sections: tuple[str, ...]
) -> tuple[argparse.Namespace, list[str]]:
    """(known flags, ``--section.field=value`` overrides); renamed, unknown and other sections'
    flags are errors that name the form to use."""
    for arg in argv:
        key = arg.split("=", 1)[0]
        if key in RENAMED:
            p.error(f"{key} was renamed: use {RENAMED[key]}")
    args, rest = p.parse_known_args(argv)
    overrides: list[str] = []
    i = 0
    while i < len(rest):
        arg = rest[i]
        key = arg.split("=", 1)[0]
        if not (arg.startswith("--") and "." in key):
            known = [o for a in p._actions for o in a.option_strings]
            close = difflib.get_close_matches(key, known, n=3)
            p.error(
                f"unknown argument {arg!r}"
                + (f"; did you mean {', '.join(close)}?" if close else "")
            )
        if key[2:].split(".", 1)[0] not in sections:
            p.error(f"{key}: {p.prog} reads only the {', '.join(sections)} section(s) of a "
                    "config; other sections belong to `hrpose train`")  # fmt: skip
        overrides.append(arg)
        if "=" not in arg and i + 1 < len(rest) and not rest[i + 1].startswith("--"):
            overrides.append(rest[i + 1])
            i += 1
        i += 1
    return args, overrides


def command_config(cls: type, args: argparse.Namespace, overrides: list[str]) -> Any:
    """The config tree of ``--config`` and the overrides (validated: unknown keys name close
    matches)."""
    if args.config and not Path(args.config).is_file():
        raise ConfigError(f"config file {args.config} not found (see configs/ for examples)")
    return load_config(cls, args.config, overrides)


def resolve_inference(
    base: InferenceSettings, args: argparse.Namespace, overrides: list[str]
) -> tuple[InferenceSettings, dict[str, str]]:
    """(settings, field -> where its value came from: record | config | flag): the record's
    settings, then the config's explicit ``inference`` fields, then the shorthand flags."""
    names = InferenceSettings.names()
    given = {
        k: v for k, v in given_values(args.config, overrides, "inference").items() if k in names
    }
    values = {n: getattr(base, n) for n in names}
    settings = from_dict(InferenceSettings, {**values, **given}, "inference")
    flags = {n: getattr(args, f"inference_{n}", None) for n in names}
    flags = {n: (tuple(v) if isinstance(v, list) else v) for n, v in flags.items() if v is not None}
    try:
        settings = replace(settings, **flags)
    except ValueError as e:
        raise ConfigError(f"inference: {e}") from None
    source = {n: "flag" if n in flags else "config" if n in given else "record" for n in names}
    return settings, source


def torch_model_and_record(
    p: argparse.ArgumentParser, args: argparse.Namespace, overrides: list[str], kinds: str
) -> tuple[Any, Any]:
    """(the torch model of --weights or the config's inference.ckpt_path, its record with the
    settings resolved: record, then --config, then flags): what export and quantize write.
    ``kinds`` names what --weights takes, for the missing-weights error."""
    from hrpose.config.schema import PoseTrainConfig
    from hrpose.loading import load_model

    cfg = command_config(PoseTrainConfig, args, overrides)
    weights = args.weights or cfg.inference.ckpt_path
    if not weights:
        p.error(f"--weights is required ({kinds})")
    loaded = load_model(weights, backend="torch")
    settings, _ = resolve_inference(loaded.record.inference, args, overrides)
    return loaded, loaded.record.with_inference(settings)


# `hrpose train`'s short flags -> the config fields they set (per task).
TRAIN_SHORT_FLAGS: dict[str, dict[str, tuple[str, ...]]] = {
    "pose": {
        "--weights": ("setup.pretrained_ckpt_path",),
        "--output": ("setup.results_dir",),
        "--device": ("trainer.accelerator",),
        "--input-size": ("data.input_size", "inference.input_size"),
        "--no-flip": ("inference.flip=false",),
    },
    "classifier": {
        "--weights": ("setup.pretrained_ckpt_path",),
        "--output": ("setup.results_dir",),
        "--device": ("trainer.accelerator",),
        "--input-size": ("data.input_size",),
    },
}


def short_flags_to_overrides(argv: list[str], table: dict[str, tuple[str, ...]]) -> list[str]:
    """``--weights W`` / ``--weights=W`` etc. -> their ``--section.field=value`` overrides;
    other arguments pass through (to the config loader, which names unknown keys)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        key, has_value, value = arg.partition("=")
        if key not in table:
            out.append(arg)
            i += 1
            continue
        fields = table[key]
        if all("=" in f for f in fields):  # a switch: --no-flip
            out += [f"--{f}" for f in fields]
            i += 1
            continue
        if not has_value:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise ConfigError(f"{key} needs a value: {key} VALUE")
            value, i = argv[i + 1], i + 1
        out += [f"--{f}={value}" for f in fields]
        i += 1
    return out
