"""``--set KEY=VALUE``: change one tracker setting from the command line.

Cutie and SAM 2 take Hydra overrides (``max_mem_frames=5``) for the same job: trying a setting on
a benchmark, or on footage that needs it, without editing code. Here KEY is a field of
:class:`vosctl.SegmenterConfig`, dotted into its groups (``memory.trusted_weight``,
``presence.lost_patience``), and VALUE is parsed as that field's type: numbers, ``true``/``false``,
``none`` where a field allows it, comma-separated pairs for tuples. Anything else is one line
naming the setting and what it accepts.

Pure (a config in, a new config out) and free of torch, so the CLI can check settings before it
loads a model.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Sequence
from dataclasses import fields, is_dataclass, replace
from typing import Any, TypeVar

from vosctl.errors import InputError

Config = TypeVar("Config")

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def apply_overrides(config: Config, items: Sequence[str]) -> Config:
    """``config`` with each ``KEY=VALUE`` of ``items`` applied in order (a later one wins)."""
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"--set {item!r}: expected KEY=VALUE, e.g. memory.trusted_weight=0.75")
        config = _set(config, key.split("."), text.strip(), key, "")
    return config


def setting_names(config: Any, prefix: str = "") -> list[str]:
    """Every settable KEY of ``config`` (dotted into its groups), for help and error messages."""
    names: list[str] = []
    for f in fields(config):
        value = getattr(config, f.name)
        if is_dataclass(value):
            names.extend(setting_names(value, f"{prefix}{f.name}."))
        else:
            names.append(prefix + f.name)
    return names


def _set(config: Any, path: list[str], text: str, key: str, prefix: str) -> Any:
    """``config`` with the field at ``path`` (below the group ``prefix``) set from ``text``."""
    name = path[0]
    known = {f.name for f in fields(config)}
    if name not in known:
        raise InputError(f"--set {key}: unknown setting; one of: {', '.join(setting_names(config, prefix))}")
    value = getattr(config, name)
    if len(path) > 1:
        if not is_dataclass(value):
            raise InputError(f"--set {key}: {name} is a single setting, not a group")
        return replace(config, **{name: _set(value, path[1:], text, key, f"{prefix}{name}.")})
    if is_dataclass(value):
        example = f"{name}.{fields(value)[0].name}"
        raise InputError(f"--set {key}: {name} is a group; name one of its settings ({example}, ...)")
    hint = typing.get_type_hints(type(config))[name]
    return replace(config, **{name: _parse(text, hint, key)})


def _parse(text: str, hint: Any, key: str) -> Any:
    """``text`` as a value of type ``hint`` (int, float, bool, str, X | None, tuple[float, ...])."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if type(None) in args and text.lower() in ("none", "null"):
            return None
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != len(args):
            raise InputError(f"--set {key}={text}: expected {len(args)} comma-separated values")
        return tuple(_parse(p, a, key) for p, a in zip(parts, args))
    if hint is bool:
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise InputError(f"--set {key}={text}: expected true or false")
    if hint is int:
        try:
            return int(text)
        except ValueError:
            raise InputError(f"--set {key}={text}: expected a whole number") from None
    if hint is float:
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise InputError(f"--set {key}={text}: expected a finite number")
        return number
    if hint is str:
        return text
    raise InputError(f"--set {key}: this setting cannot be set from the command line")
