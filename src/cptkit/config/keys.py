"""Unknown keys, refused before pydantic sees them, with the key that was probably meant.

pydantic's own `extra_forbidden` error cannot suggest anything; this walk knows the schema, so a typo gets
"did you mean 'training.train_iters'?" (the full dotted key, ready to paste as an override) in a file of sections, or
"did you mean 'tokens'?" inside a list item or a map entry (`sources[0].tokenz`), where a dotted key cannot be written.

A free-form mapping field whose keys are another model's fields (a recipe's `model.config` holds `ModelConfig`
fields, checked against the checkpoint later) is typed `Annotated[dict[str, Any] | None, KeysOf(ModelConfig)]`: its
keys are checked here, its values where they are used.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from cptkit.errors import UserError

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class KeysOf:
    """Marks a `dict` field whose keys must be `model`'s fields (values are validated elsewhere)."""

    model: type[BaseModel]


def field_path(loc: Loc) -> str:
    """('sources', 3, 'tokens') → 'sources[3].tokens'; ('training', 'seq_length') → 'training.seq_length'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _nested(annotation: Any, metadata: list[Any] = ()) -> tuple[str, type[BaseModel]] | None:
    """('model'|'list'|'dict', Model) for a field typed Model, list[Model], dict[str, Model] (optional or not), or
    marked KeysOf(Model)."""
    for m in metadata:
        if isinstance(m, KeysOf):
            return ("model", m.model)
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *meta = typing.get_args(annotation)
        return _nested(base, meta)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _nested(arg)
            if found:
                return found
        return None
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        inner = _nested(args[0]) if args else None
        return ("list", inner[1]) if inner and inner[0] == "model" else None
    if origin is dict:
        inner = _nested(typing.get_args(annotation)[1])
        return ("dict", inner[1]) if inner and inner[0] == "model" else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return ("model", annotation)
    return None


def nested_model(info: FieldInfo) -> tuple[str, type[BaseModel]] | None:
    return _nested(info.annotation, info.metadata)


def known_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every dotted key reachable through sections (not through lists or maps): what an override may name."""
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        dotted = prefix + name
        keys.add(dotted)
        inner = nested_model(info)
        if inner and inner[0] == "model":
            keys |= known_keys(inner[1], dotted + ".")
    return keys


def _closest(word: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def suggestion(loc: Loc, fields: list[str], all_keys: set[str] | None) -> str:
    """ "; did you mean 'X'?" (or the valid keys) for the unknown key at `loc`, whose mapping holds `fields`.

    `all_keys` is given when `loc` runs through sections only: then the whole schema is searched (the right name
    under the wrong section, `train_iters` → `training.train_iters`) and the answer is a full dotted key."""
    leaf = str(loc[-1])
    if all_keys is None:
        close = _closest(leaf, fields)
        return f"; did you mean '{close}'?" if close else f"; valid keys here: {', '.join(fields)}"
    dotted = field_path(loc)
    keys = sorted(all_keys)
    close = _closest(dotted, keys)
    if close is None:
        by_leaf = [k for k in keys if k.rsplit(".", 1)[-1] == leaf]
        if by_leaf:
            close = by_leaf[0]
        else:
            near = _closest(leaf, sorted({k.rsplit(".", 1)[-1] for k in keys}))
            close = next((k for k in keys if k.rsplit(".", 1)[-1] == near), None) if near else None
    return f"; did you mean '{close}'?" if close else f"; valid keys here: {', '.join(fields)}"


def check_keys(
    data: Any,
    model: type[BaseModel],
    file_of: Callable[[str], str | None],
    loc: Loc = (),
    all_keys: set[str] | None = None,
) -> None:
    """Raise a `UserError` for the first key of `data` that `model` (recursively) does not have."""
    if not isinstance(data, dict):
        return  # pydantic reports the wrong type
    if loc == ():
        all_keys = known_keys(model)
    fields = model.model_fields
    for key, value in data.items():
        here = (*loc, str(key))
        if key not in fields:
            field = field_path(here)
            hint = suggestion(here, list(fields), all_keys)
            raise UserError(f"unknown key{hint}", file=file_of(field), field=field)
        inner = nested_model(fields[key])
        if inner is None:
            continue
        kind, sub = inner
        if kind == "model":
            check_keys(value, sub, file_of, here, all_keys)
        elif kind == "list" and isinstance(value, list):
            for i, item in enumerate(value):
                check_keys(item, sub, file_of, (*here, i), None)
        elif kind == "dict" and isinstance(value, dict):
            for name, item in value.items():
                check_keys(item, sub, file_of, (*here, str(name)), None)
