"""Turn a mixture YAML into a validated `Mixture`, or one `UserError` line naming the file and the field.

Order of checks: YAML syntax → `${VAR}` expansion (every string) → unknown keys (with the closest valid key) →
pydantic field types → rules between fields (targets, groups, duplicate names).
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from cptkit.errors import UserError
from cptkit.mix.schema import Mixture, Source
from cptkit.util.envvars import expand

Loc = tuple[str | int, ...]


def field_path(loc: Loc) -> str:
    """('sources', 3, 'tokens') -> 'sources[3].tokens'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load(path: str | os.PathLike) -> Mixture:
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("mixture file not found", file=file) from None
    except (IsADirectoryError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the mixture: {e}", file=file) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise UserError(f"{where}invalid YAML: {getattr(e, 'problem', None) or e}", file=file) from None
    if not isinstance(data, dict):
        raise UserError("a mixture must be a YAML mapping with `name`, `tokenizer` and `sources`", file=file)

    data = _expand_all(data, (), file)
    _check_keys(data, Mixture, (), file)
    try:
        mixture = Mixture.model_validate(data)
    except ValidationError as e:
        raise _user_error(e, file) from None
    mixture._file = file
    check_rules(mixture)
    return mixture


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; in a mixture that silently drops a target, so it is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expand_all(obj: Any, loc: Loc, file: str) -> Any:
    if isinstance(obj, str):
        return expand(obj, file=file, field=field_path(loc) or None)
    if isinstance(obj, dict):
        return {k: _expand_all(v, (*loc, str(k)), file) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_expand_all(v, (*loc, i), file) for i, v in enumerate(obj)]
    return obj


def _model_in(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """('model'|'list'|'dict', Model) for a field typed Model, list[Model] or dict[str, Model] (optional or not)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found:
                return found
        return None
    if origin is list:
        inner = _model_in(typing.get_args(annotation)[0])
        return ("list", inner[1]) if inner and inner[0] == "model" else None
    if origin is dict:
        inner = _model_in(typing.get_args(annotation)[1])
        return ("dict", inner[1]) if inner and inner[0] == "model" else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return ("model", annotation)
    return None


def _check_keys(data: Any, model: type[BaseModel], loc: Loc, file: str) -> None:
    """Reject unknown keys before pydantic does, so the error can suggest the key that was meant."""
    if not isinstance(data, dict):
        return  # pydantic reports the wrong type
    fields = model.model_fields
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(fields)}"
            raise UserError(f"unknown key '{key}'{hint}", file=file, field=field_path((*loc, str(key))))
        inner = _model_in(fields[key].annotation)
        if inner is None:
            continue
        kind, sub = inner
        if kind == "model":
            _check_keys(value, sub, (*loc, key), file)
        elif kind == "list" and isinstance(value, list):
            for i, item in enumerate(value):
                _check_keys(item, sub, (*loc, key, i), file)
        elif kind == "dict" and isinstance(value, dict):
            for name, item in value.items():
                _check_keys(item, sub, (*loc, key, str(name)), file)


def _user_error(e: ValidationError, file: str) -> UserError:
    errors = e.errors(include_url=False)
    first = errors[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "missing":
        message = "required field is missing"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return UserError(message + more, file=file, field=field_path(tuple(first["loc"])) or None)


def target_tokens(mixture: Mixture, source: Source) -> float:
    """Tokens to train on from `source` (its `tokens`, its `share` of the budget, or the sum of its datasets)."""
    if source.tokens is not None:
        return float(source.tokens)
    if source.share is not None:
        assert mixture.total_tokens is not None, "checked by check_rules"
        return source.share / 100.0 * mixture.total_tokens
    return float(sum(d.tokens or 0 for d in source.datasets or ()))


def check_rules(m: Mixture) -> None:
    """Rules that span fields. Each raises a UserError naming the field to fix."""
    file = m.file
    seen: dict[str, int] = {}
    for i, s in enumerate(m.sources):
        where = f"sources[{i}]"
        if s.name in seen:
            raise UserError(
                f"duplicate source name '{s.name}' (also sources[{seen[s.name]}])", file=file, field=f"{where}.name"
            )
        seen[s.name] = i
        if (s.prefix is None) == (s.datasets is None):
            raise UserError("give exactly one of `prefix` or `datasets`", file=file, field=where)
        if s.datasets is not None and s.input is not None:
            raise UserError("with `datasets`, give each dataset its own `input`", file=file, field=f"{where}.input")
        if s.tokens is not None and s.share is not None:
            raise UserError("give `tokens` or `share`, not both", file=file, field=f"{where}.share")
        for j, d in enumerate(s.datasets or ()):
            if d.tokens is not None and d.tokens <= 0:
                raise UserError("must be a positive token count", file=file, field=f"{where}.datasets[{j}].tokens")
        with_tokens = [d.tokens is not None for d in s.datasets or ()]
        if any(with_tokens) and not all(with_tokens):
            j = with_tokens.index(False)
            raise UserError(
                "give `tokens` for every dataset of the source or for none", file=file, field=f"{where}.datasets[{j}]"
            )
        if s.tokens is None and s.share is None and not (with_tokens and all(with_tokens)):
            raise UserError("no target: give `tokens` (e.g. 8B) or `share` (percent)", file=file, field=where)
        if s.share is not None and m.total_tokens is None:
            raise UserError("`share` needs the mixture's `total_tokens`", file=file, field=f"{where}.share")
        if m.groups is not None:
            if s.group is None:
                raise UserError(f"missing group; one of: {', '.join(m.groups)}", file=file, field=f"{where}.group")
            if s.group not in m.groups:
                close = difflib.get_close_matches(s.group, list(m.groups), n=1, cutoff=0.5)
                hint = f"did you mean '{close[0]}'?" if close else f"declared: {', '.join(m.groups)}"
                raise UserError(f"unknown group '{s.group}'; {hint}", file=file, field=f"{where}.group")
        for j, d in enumerate(s.prefixes()):
            if any(c.isspace() for c in d.prefix):
                field = f"{where}.prefix" if s.datasets is None else f"{where}.datasets[{j}].prefix"
                raise UserError("a Megatron prefix cannot contain whitespace", file=file, field=field)

    if m.total_tokens is not None and m.total_tokens <= 0:
        raise UserError("must be a positive token count", file=file, field="total_tokens")
    targets = [target_tokens(m, s) for s in m.sources]
    for i, (s, t) in enumerate(zip(m.sources, targets, strict=True)):
        if t <= 0:  # Megatron cannot blend a zero weight; drop the source instead
            field = "tokens" if s.tokens is not None else ("share" if s.share is not None else "datasets")
            raise UserError("the target must be a positive token count", file=file, field=f"sources[{i}].{field}")
    total = sum(targets)
    if m.total_tokens is not None:
        percent = 100.0 * total / m.total_tokens
        if percent > 100.0 + 0.1:
            raise UserError(
                f"the source targets add up to {percent:.2f}% of total_tokens (over 100%)", file=file, field="sources"
            )
    if m.groups is not None:
        declared = sum(g.percent for g in m.groups.values())
        if abs(declared - 100.0) > 0.1:
            raise UserError(f"group percentages add up to {declared:g}%, not 100%", file=file, field="groups")
        for name, g in m.groups.items():
            got = 100.0 * sum(t for s, t in zip(m.sources, targets, strict=True) if s.group == name) / total
            if abs(got - g.percent) > m.tolerance_points:
                raise UserError(
                    f"the sources of group '{name}' make up {got:.2f}% of the mixture's tokens, but the group "
                    f"declares {g.percent:g}% (tolerance {m.tolerance_points:g} points)",
                    file=file,
                    field=f"groups.{name}.percent",
                )
