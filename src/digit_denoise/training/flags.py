"""The ``train`` command's flags, made from :class:`.config.TrainConfig`: one flag per field, the comment beside
the field as its help, ``--config RECIPE.toml`` for a recipe file; every value then goes through the field's
parser (:func:`.config.parse_value`). No torch here."""

from __future__ import annotations

import argparse
import inspect
import re
from dataclasses import MISSING, fields
from typing import Any

from .config import PRESET_HELP, PRESETS, TrainConfig, flag_name, load_config, resolve_config

FLAG_HELP_EXTRA = {
    "preset": lambda: ": " + "; ".join(f"{k}: {v}" for k, v in PRESET_HELP.items()),
}
_COMMENT = re.compile(r"^\s+(\w+):\s*[^=]+=.*?#\s*(.*)$")


def field_help() -> dict[str, str]:
    """{field: the comment beside it in :class:`TrainConfig`}."""
    out = {}
    for line in inspect.getsource(TrainConfig).splitlines():
        m = _COMMENT.match(line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ":".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) if value and not isinstance(
            value[0], str) else ",".join(value)
    return repr(value)


def _escape(text: str) -> str:
    return text.replace("%", "%%")  # argparse formats help texts


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``--config FILE`` and one flag per :class:`TrainConfig` field (``--batch-size``; booleans as
    ``--compile`` / ``--no-augment``). Every default is None (not given), so the recipe's, the preset's
    or the field's value applies."""
    helps = field_help()
    p.add_argument("--config", default=None, metavar="RECIPE.toml",
                   help="a recipe file (TOML, keys = the options below); flags override its values")
    for f in fields(TrainConfig):
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        flag = flag_name(f.name)
        text = helps.get(f.name, "") + FLAG_HELP_EXTRA.get(f.name, lambda: "")()
        if f.name == "preset":
            p.add_argument(flag, default=None, choices=list(PRESETS),
                           help=_escape(text + " (default: the recipe's, else seed)"))
        elif f.name == "recipe":
            continue  # set by --config
        elif default is True or default is False:
            if default:
                p.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_const", const=False,
                               default=None, help=_escape(f"turn off: {text}"))
            else:
                p.add_argument(flag, action="store_const", const=True, default=None, help=_escape(text))
        else:
            p.add_argument(flag, default=None,
                           help=_escape(f"{text} (default: the recipe's or preset's, else {_shown(default)})"))


def config_from_args(a: argparse.Namespace) -> TrainConfig:
    """The resolved config of parsed ``train`` flags over the ``--config`` recipe (if any)."""
    overrides = {f.name: getattr(a, f.name, None) for f in fields(TrainConfig) if f.name not in ("preset", "recipe")}
    if getattr(a, "config", None):
        return load_config(a.config, a.preset, **overrides)
    return resolve_config(a.preset or "seed", **overrides)
