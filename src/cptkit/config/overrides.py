"""`key=value` overrides from the command line, merged over a loaded config before it is validated.

Keys are dotted paths (`training.train_iters`); list items are addressed as `sources[0].tokens` or `sources.0.tokens`.
Values are parsed as YAML (`1e-4`, `true`, `null`, `[1, 2]`, `{a: 1}`, `8B` stays a string for the field to parse)
and then checked by the same schema as the file, so `training.train_iters=abc` is an error naming the key, and an
unknown key gets the same "did you mean" as in a file.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

import yaml

from cptkit.config.keys import Loc, field_path
from cptkit.config.source import COMMAND_LINE, Origins
from cptkit.errors import UserError

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_key(key: str) -> Loc:
    """'a.b[2].c' or 'a.b.2.c' → ('a', 'b', 2, 'c')."""
    parts: list[str | int] = []
    pos = 0
    for m in _PART.finditer(key):
        between = key[pos : m.start()]
        if between not in ("", "."):
            break
        name, index = m.groups()
        parts.append(int(index) if index is not None else (int(name) if name.isdigit() else name))
        pos = m.end()
    if not parts or pos != len(key) or key.startswith(".") or key.endswith("."):
        raise UserError(f"cannot read the key {key!r} (write it dotted, e.g. training.train_iters)", file=COMMAND_LINE)
    return tuple(parts)


def parse_override(item: str) -> tuple[Loc, Any]:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(
            f"override {item!r} is not of the form key=value (e.g. training.train_iters=100)", file=COMMAND_LINE
        )
    loc = parse_key(key)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise UserError(
            f"cannot parse value {raw!r}: {' '.join(str(e).split())}", file=COMMAND_LINE, field=key
        ) from None
    return loc, value


def _set(data: dict[str, Any], loc: Loc, value: Any) -> None:
    node: Any = data
    for depth, part in enumerate(loc[:-1]):
        nxt = loc[depth + 1]
        node = _step(node, part, loc[: depth + 1], create=list if isinstance(nxt, int) else dict)
    last = loc[-1]
    if isinstance(node, list):
        _check_index(node, last, loc)
        node[last] = value  # type: ignore[index]
    else:
        node[str(last)] = value


def _step(node: Any, part: str | int, loc: Loc, create: type) -> Any:
    if isinstance(node, list):
        _check_index(node, part, loc)
        return node[part]  # type: ignore[index]
    key = str(part)
    child = node.get(key)
    if isinstance(child, dict):
        return child
    if isinstance(child, list):
        if create is list:
            return child
        raise UserError("this is a list: address an item, e.g. [0]", file=COMMAND_LINE, field=field_path(loc))
    if create is list:
        raise UserError("there is no list here to index", file=COMMAND_LINE, field=field_path(loc))
    node[key] = {}  # a section not in the file yet, or a null one
    return node[key]


def _check_index(node: list, part: str | int, loc: Loc) -> None:
    if not isinstance(part, int) or not 0 <= part < len(node):
        where = field_path(loc[:-1]) if len(loc) > 1 else "the list"
        raise UserError(f"{where} has {len(node)} items; no item {part}", file=COMMAND_LINE, field=field_path(loc))


def apply_overrides(data: dict[str, Any], origin: Origins, overrides: Sequence[str]) -> tuple[dict[str, Any], Origins]:
    """`data` with every `key=value` of `overrides` set, in order; `origin` says "command line" for them."""
    data, origin = copy.deepcopy(data), Origins(origin)
    for item in overrides:
        loc, value = parse_override(item)
        _set(data, loc, value)
        key = field_path(loc)
        for k in [k for k in origin if k.startswith(key + ".") or k.startswith(key + "[")]:
            del origin[k]
        origin[key] = COMMAND_LINE
    return data, origin
