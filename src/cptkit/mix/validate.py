"""Turn a mixture YAML into a validated `Mixture`, or one `UserError` line naming the file and the field.

Reading, `inherit:`, unknown keys (with the closest valid key), `${VAR}` expansion (every string) and pydantic field
types are `cptkit.config`'s, as for every cptkit config file; this module adds the rules between fields (targets,
groups, duplicate names), which `Mixture.loaded` runs once the fields are valid.
"""

from __future__ import annotations

import difflib
import os

from cptkit.config.keys import field_path
from cptkit.errors import UserError
from cptkit.mix.schema import Mixture, Source

__all__ = ["check_rules", "field_path", "load", "target_tokens"]


def load(path: str | os.PathLike) -> Mixture:
    return Mixture.from_file(path)


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
