"""Schema → Markdown: the field tables of docs/mixture.md and docs/recipe.md, generated from the pydantic models.

Each stage keeps its prose (what the file is for, its rules, examples) and chooses a `DocStyle`; the tables (one per
model: type, default, description, and whatever extra columns the stage wants) come from here, so the reference
cannot drift from the code and both documents render a field the same way:

- types: `integer`, `number`, `string`, `boolean`; `tokens` / `percent` for fields parsed by a before-validator
  named `_tokens` / `_percent` (the unit parsers); `one of `a`, `b`` for Literal and Enum; `list of X`; `map of
  name → X` (plain `map` for free-form values); sub-models as a link or "map (table below)"; constraints (`> 0`,
  `≥ 0`, `non-empty`) and "or null" when the style asks for them;
- defaults: `**required**`, the value in backticks (YAML spelling: `true`, `null`), `(section)` for a sub-model.

    from cptkit.config.docgen import DocStyle, table
    print(table(Mixture, DocStyle(), columns=("field", "type", "default", "description")))
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

# Before-validators whose name says the unit a field is written in.
UNIT_PARSERS = {"_tokens": "tokens", "_percent": "percent"}


@dataclass(frozen=True)
class DocStyle:
    """How one document renders types and defaults."""

    none_default: str = "—"  # a default of None; the recipe reference writes "`null`"
    or_null: bool = False  # "integer or null" for optional fields
    constraints: bool = False  # "integer > 0"
    link_models: bool = True  # "[Group](#group)"; else "map (table below)"


def annotation_of(info: FieldInfo) -> Any:
    """The field's full annotation: pydantic moves `Annotated[...]` metadata (validators, constraints) into
    `info.metadata`; put it back."""
    return typing.Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def unit_fields(model: type[BaseModel]) -> dict[str, str]:
    """Field → unit label for fields whose `@field_validator(mode="before")` is a unit parser (`_tokens`)."""
    out: dict[str, str] = {}
    for dec in model.__pydantic_decorators__.field_validators.values():
        label = UNIT_PARSERS.get(getattr(dec.func, "__name__", ""))
        if label:
            out.update(dict.fromkeys(dec.info.fields, label))
    return out


def _constraints(metadata: Sequence[Any]) -> list[str]:
    out = []
    for m in metadata:
        for cls, sign, attr in ((at.Gt, ">", "gt"), (at.Ge, "≥", "ge"), (at.Lt, "<", "lt"), (at.Le, "≤", "le")):
            if isinstance(m, cls):
                out.append(f"{sign} {getattr(m, attr):g}")
        if isinstance(m, at.MinLen) and m.min_length == 1:
            out.append("non-empty")
    return out


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def type_name(annotation: Any, style: DocStyle, unit: str | None = None) -> str:
    """How the reference names a field's type; `unit` labels a plain integer field ("tokens")."""
    origin = typing.get_origin(annotation)
    if _is_union(annotation):
        args = typing.get_args(annotation)
        names = [type_name(a, style, unit) for a in args if a is not type(None)]
        nullable = style.or_null and type(None) in args
        return " or ".join(names) + (" or null" if nullable else "")
    if origin is typing.Annotated:
        base, *meta = typing.get_args(annotation)
        for m in meta:
            label = UNIT_PARSERS.get(getattr(getattr(m, "func", None), "__name__", ""))
            if label:
                return label
        if _is_union(base):  # Field(ge=0) on `int | None`: the constraint belongs to each member
            inner = [a for a in typing.get_args(base) if a is not type(None)]
            nullable = " or null" if style.or_null and len(inner) < len(typing.get_args(base)) else ""
            return " or ".join(type_name(typing.Annotated[(a, *meta)], style, unit) for a in inner) + nullable
        constraints = _constraints(meta) if style.constraints else []
        return " ".join([type_name(base, style, unit), *constraints])
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{v}`" for v in typing.get_args(annotation))
    if origin is list:
        return f"list of {type_name(typing.get_args(annotation)[0], style)}"
    if origin is dict:
        value = typing.get_args(annotation)[1]
        return "map" if value is Any else f"map of name → {type_name(value, style)}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        name = annotation.__name__
        return f"[{name}](#{name.lower()})" if style.link_models else "map (table below)"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(f"`{m.value}`" for m in annotation)
    if unit and annotation is int:
        return unit
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(annotation, str(annotation))


def value_text(value: Any, style: DocStyle) -> str:
    if value is None:
        return style.none_default
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if value == "":
        return '`""`'
    if value == {}:
        return "`{}`"
    return f"`{value}`"


def default_text(info: FieldInfo, style: DocStyle) -> str:
    if info.is_required():
        return "**required**"
    if info.default_factory is not None:
        value = info.default_factory()
        return "(section)" if isinstance(value, BaseModel) else value_text(value, style)
    return "—" if info.default is PydanticUndefined else value_text(info.default, style)


def cell(text: str) -> str:
    """One table cell: one line, `|` escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def header(columns: Sequence[str]) -> str:
    return "| " + " | ".join(columns) + " |\n" + "|" + "---|" * len(columns) + "\n"


def row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |\n"


def table(
    model: type[BaseModel],
    style: DocStyle,
    *,
    columns: Sequence[str] = ("field", "type", "default", "description"),
    fields: Sequence[tuple[str, FieldInfo]] | None = None,
    cells: Callable[[str, FieldInfo], dict[str, str]] | None = None,
) -> str:
    """A Markdown table of `fields` (default: all of `model`'s, named as in the file). The standard columns are
    "field"/"key" (the name in backticks), "type", "default", "description"; `cells(name, info)` fills the others
    (and may override any)."""
    units = unit_fields(model)
    fields = list(model.model_fields.items()) if fields is None else fields
    out = [header(columns)]
    for name, info in fields:
        leaf = name.rsplit(".", 1)[-1]
        standard = {
            "field": f"`{name}`",
            "key": f"`{name}`",
            "type": type_name(annotation_of(info), style, units.get(leaf)),
            "default": default_text(info, style),
            "description": cell(info.description or ""),
        }
        standard.update(cells(name, info) if cells else {})
        out.append(row([standard[c] for c in columns]))
    return "".join(out)
