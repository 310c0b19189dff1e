"""Typed configuration: every field of a config dataclass is checked from its annotation and metadata.

A field's type annotation (``int``, ``float``, ``bool``, ``str``, ``list[int]``,
``X | None``) is enforced strictly -- a YAML ``epochs: 1.7`` or
``dense_output: "no"`` is an error, not a coercion -- and its metadata gives
the allowed range or values:

``choices``  a tuple, or a function returning one (registries filled at import)
``min`` / ``max``  inclusive bounds; ``gt`` / ``lt``  exclusive bounds (numbers
and the items of a list)
``nonempty``  a list must have at least one item

Floats must be finite. Messages name the option the way the user wrote it
(``--lr`` on the command line and in :class:`~sparsetopo.training.TrainConfig`,
the plain key in experiment configs), the allowed values and the value given.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from .errors import FileFormatError, SparsetopoError

__all__ = ["check_config", "check_value", "describe_default", "load_yaml_mapping", "option", "registry"]


def _choices(meta) -> tuple | None:
    c = meta.get("choices")
    return tuple(c()) if callable(c) else (tuple(c) if c is not None else None)


def _bounds_text(meta) -> str:
    """``in [0, 1)``, ``>= 1``, ``> 0``...: the allowed range as a reader expects it."""
    lo = ("[", meta["min"]) if "min" in meta else ("(", meta["gt"]) if "gt" in meta else None
    hi = ("]", meta["max"]) if "max" in meta else (")", meta["lt"]) if "lt" in meta else None
    if lo and hi:
        return f"in {lo[0]}{_num(lo[1])}, {_num(hi[1])}{hi[0]}"
    if lo:
        return f"{'>=' if lo[0] == '[' else '>'} {_num(lo[1])}"
    if hi:
        return f"{'<=' if hi[0] == ']' else '<'} {_num(hi[1])}"
    return ""


def _num(x) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _in_bounds(x, meta) -> bool:
    return not (("min" in meta and x < meta["min"]) or ("gt" in meta and x <= meta["gt"])
                or ("max" in meta and x > meta["max"]) or ("lt" in meta and x >= meta["lt"]))


def _split_optional(hint):
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_value(label: str, value: Any, hint, meta: typing.Mapping[str, Any]) -> None:
    """Raise :class:`SparsetopoError` unless ``value`` fits the annotation ``hint`` and ``meta``."""
    base, optional = _split_optional(hint)
    if value is None:
        if optional:
            return
        raise SparsetopoError(f"{label} must be given; got nothing (null)")
    choices = _choices(meta)
    bounds = _bounds_text(meta)
    got = f"got {value!r}"
    if base is bool:
        if not isinstance(value, bool):
            raise SparsetopoError(f"{label} must be true or false; {got}")
        return
    if base is str:
        if not isinstance(value, str):
            raise SparsetopoError(f"{label} must be a string; {got}")
        if choices is not None and value not in choices:
            raise SparsetopoError(f"{label} must be one of {', '.join(map(str, choices))}; {got}")
        return
    if base is int:
        if not _is_int(value):
            raise SparsetopoError(f"{label} must be an integer{' ' + bounds if bounds else ''}; {got}")
        if not _in_bounds(value, meta):
            raise SparsetopoError(f"{label} must be an integer {bounds}; {got}")
        return
    if base is float:
        if not _is_number(value) or not math.isfinite(value):
            raise SparsetopoError(f"{label} must be a finite number{' ' + bounds if bounds else ''}; {got}")
        if not _in_bounds(value, meta):
            raise SparsetopoError(f"{label} must be a number {bounds}; {got}")
        return
    if typing.get_origin(base) is list:
        (item,) = typing.get_args(base)
        if item is str:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise SparsetopoError(f"{label} must be a list of names; {got}")
            if (meta.get("nonempty") and not value) or (choices and any(v not in choices for v in value)):
                raise SparsetopoError(f"{label} must be a non-empty list of {', '.join(choices or ())}; {got}")
            return
        kind = "integers" if item is int else "numbers"
        ok_item = _is_int if item is int else (lambda v: _is_number(v) and math.isfinite(v))
        if not isinstance(value, list) or not all(ok_item(v) for v in value):
            raise SparsetopoError(f"{label} must be a list of {kind}{' ' + bounds if bounds else ''}; {got}")
        if meta.get("nonempty") and not value:
            raise SparsetopoError(f"{label} must list at least one value; {got}")
        bad = [v for v in value if not _in_bounds(v, meta)]
        if bad:
            raise SparsetopoError(f"{label} must be a list of {kind} {bounds}; {got}")
        return
    raise TypeError(f"no check for the annotation {hint!r} of {label}")  # a programming error, not bad input


def check_config(obj, *, flags: bool = False, borrow: type | None = None) -> None:
    """Check every field of the dataclass instance ``obj`` (see the module docstring).

    ``flags``: name fields as command-line flags (``--batch-size``), else as keys.
    ``borrow``: a dataclass whose same-named fields lend their checks to fields
    that declare none (experiment configs reuse TrainConfig's ranges).
    """
    hints = typing.get_type_hints(type(obj))
    lenders = {f.name: f.metadata for f in dataclasses.fields(borrow)} if borrow else {}
    for f in dataclasses.fields(obj):
        label = "--" + f.name.replace("_", "-") if flags else f.name
        meta = f.metadata if len(f.metadata) > ("help" in f.metadata) else lenders.get(f.name, f.metadata)
        check_value(label, getattr(obj, f.name), hints[f.name], meta)


def describe_default(value: Any) -> str | None:
    """A default as a user types it: lists space-separated, booleans on/off, None left out."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return " ".join(map(str, value)) if value else "none"
    return str(value)


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys (the last would silently win)."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise SparsetopoError(f"duplicate key {key!r} (lines {seen[key] + 1} and {key_node.start_mark.line + 1})")
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; keys come back with dashes as underscores."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(path, "config file not found" if not path.exists() else "not a regular file")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise FileFormatError(path, "not a text file (a YAML config was expected)") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except SparsetopoError as exc:
        raise FileFormatError(path, str(exc)) from None
    except yaml.YAMLError as exc:
        raise FileFormatError(path, f"invalid YAML ({' '.join(str(exc).split())})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FileFormatError(path, f"a config file must be a mapping of keys to values, got a {type(data).__name__}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise FileFormatError(path, f"keys must be names, got {bad[0]!r}")
    return {k.replace("-", "_"): v for k, v in data.items()}


def registry(module: str, name: str):
    """Choices filled by a registry at import (methods, activations, ...), looked up when checked,
    so that declaring a config (and ``--help``) imports neither the registry nor torch."""
    def get():
        import importlib

        return tuple(getattr(importlib.import_module(f"sparsetopo.{module}"), name))
    return get


def option(default=dataclasses.MISSING, *, help: str, factory=None, **checks):
    """A config field: its ``help`` (the flag's help text) and checks (see the module docstring)."""
    meta = {"help": help, **checks}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)
