"""Typed configuration: every field of a config dataclass is checked from its annotation and metadata.

A field's type annotation (``int``, ``float``, ``bool``, ``str``, ``list[int]``,
``X | None``) is enforced strictly -- a YAML ``epochs: 1.7`` or
``dense_output: "no"`` is an error, not a coercion -- and its metadata gives
the allowed range or values:

``choices``  a tuple, or a function returning one (registries filled at import)
``min`` / ``max``  inclusive bounds; ``gt`` / ``lt``  exclusive bounds (numbers
and the items of a list)
``nonempty``  a list must have at least one item

Floats must be finite. Integer fields take integers only: ``1000.0`` and ``1e3``
(floats in YAML) are refused with a hint to write ``1000`` (``1_000`` is YAML's
integer 1000), since a check never changes the value it checks. Float fields take
integers and floats; in YAML files (:func:`load_yaml_mapping`) ``1e-3``,
``1E-3``, ``+1e3``, ``.5`` and ``5.`` are floats. Messages name the option the way the user wrote it
(``--lr`` on the command line and in :class:`~sparsetopo.training.TrainConfig`,
the plain key in experiment configs), the allowed values and the value given.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import reprlib
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from .errors import FileFormatError, SparsetopoError

__all__ = ["check_config", "check_value", "describe_default", "load_yaml_mapping", "option", "registry"]


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 10, 10, 10
_REPR.maxstring = _REPR.maxother = 120
_REPR.maxlong = 60


def _short_repr(value) -> str:
    """``repr`` cut to a line: a message must not be built from a huge (or alias-shared) structure."""
    return _REPR.repr(value)


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


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
    got = f"got {_short_repr(value)}"
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
            advice = ""
            if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
                advice = f" (write an integer without a decimal point or exponent: {int(value)})"
            raise SparsetopoError(f"{label} must be an integer{' ' + bounds if bounds else ''}; {got}{advice}")
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


#: Bounds on a YAML document, checked while it is composed (before any value is built): configs are
#: a few dozen keys, so these only stop hostile files -- an alias bomb ("billion laughs") expands
#: exponentially, deep nesting overflows the recursive composer.
MAX_YAML_DEPTH = 50
MAX_YAML_NODES = 100_000
MAX_YAML_BYTES = 16 * 2**20

# YAML 1.1 (PyYAML's) reads ``1e-3`` as a string: its floats need a dot and a signed exponent.
# People write exponents without either, so numbers with an exponent are floats here as in YAML 1.2.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$")


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys (the last would silently win) and bounds the document.

    Besides YAML 1.1's numbers it reads ``1e-3``, ``1E3``, ``+1e3`` and ``1.0e3`` as floats;
    merge keys (``<<: *base``) work as in ``yaml.SafeLoader``, their keys overridden by the
    mapping's own.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent, index):
        # The composer recurses once per level: bound the depth before Python's stack is.
        if self._depth >= MAX_YAML_DEPTH:
            line = self.peek_event().start_mark.line + 1
            raise SparsetopoError(f"nested deeper than {MAX_YAML_DEPTH} levels (line {line})")
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        # The size a node has once its aliases are expanded; an alias is the anchored node itself,
        # already counted, so this is linear in the document while the expansion may be exponential.
        if id(node) not in self._sizes:
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            else:
                children = []
            size = 1 + sum(self._sizes.get(id(c), 1) for c in children)
            if size > MAX_YAML_NODES:
                raise SparsetopoError(f"expands to more than {MAX_YAML_NODES} values through aliases or size "
                                      f"(line {node.start_mark.line + 1}); a config is a few dozen keys")
            self._sizes[id(node)] = size
        return node


_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+.0123456789"))


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # "<<": its keys are defaults, which the mapping's own keys override
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # unhashable: a list or mapping as a key
            raise SparsetopoError(f"keys must be names, got a {type(key).__name__} "
                                  f"(line {key_node.start_mark.line + 1})") from None
        if duplicate:
            raise SparsetopoError(f"duplicate key {_short_repr(key)} "
                                  f"(lines {seen[key] + 1} and {key_node.start_mark.line + 1})")
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; keys come back with dashes as underscores.

    Every YAML file the project reads (train and experiment configs, a run's
    ``config.yaml``) comes through here: duplicate keys, files over
    ``MAX_YAML_BYTES``, nesting deeper than ``MAX_YAML_DEPTH`` and documents
    expanding (through aliases) to more than ``MAX_YAML_NODES`` values are
    errors naming the file. Numbers with an exponent (``1e-3``) are floats.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(path, "config file not found" if not path.exists() else "not a regular file")
    size = path.stat().st_size
    if size > MAX_YAML_BYTES:
        raise FileFormatError(path, f"{size} bytes is too large for a YAML config (at most {MAX_YAML_BYTES})")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise FileFormatError(path, "not a text file (a YAML config was expected)") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except SparsetopoError as exc:
        raise FileFormatError(path, str(exc)) from None
    except yaml.YAMLError as exc:
        raise FileFormatError(path, f"invalid YAML ({_short(' '.join(str(exc).split()))})") from None
    except RecursionError:  # a safety net: the depth bound above should come first
        raise FileFormatError(path, f"nested deeper than {MAX_YAML_DEPTH} levels") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FileFormatError(path, f"a config file must be a mapping of keys to values, got a {type(data).__name__}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise FileFormatError(path, f"keys must be names, got {_short_repr(bad[0])}")
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
