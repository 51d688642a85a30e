"""Reading a config file into plain data: YAML or JSON, `inherit:` from a base file, and where each key came from.

Every cptkit config (recipe, mixture, cluster profile, mapping spec, eval suite, `cptkit_model.json`) is read here, so
they share one set of rules:

- `.json` files are JSON, everything else YAML (safe loader). A key given twice in one mapping is an error: PyYAML
  would keep the last one, silently dropping a value.
- `inherit: BASE.yaml` (a path relative to the file, `${VAR}` expanded) loads the base first and merges the file over
  it: mappings key by key, anything else (lists, scalars) replaced. A config class may name keys that are replaced
  whole (a recipe's `model.config`: a model shape is not meant to be half-inherited).
- `Origins` records which file set each key, so an error names the file the user has to edit, even when the value
  was inherited from a base two levels up, or set on the command line.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from cptkit.errors import UserError
from cptkit.util.envvars import expand

COMMAND_LINE = "command line"
INHERIT = "inherit"


class Origins(dict):
    """Dotted key (`training.train_iters`, `sources[0].tokens`) → the file (or "command line") that set it."""

    def file_of(self, key: str, default: str | None = None) -> str | None:
        """The file that set `key`, else of its closest parent, else of the last key below it (a section-level
        error, e.g. `optimizer: min_lr is larger than lr`, names the file that set the section's keys)."""
        probe = key
        while probe:
            if probe in self:
                return self[probe]
            below = [f for k, f in self.items() if k.startswith(probe + ".") or k.startswith(probe + "[")]
            if below:
                return below[-1]
            probe = parent_key(probe)
        return default


def parent_key(key: str) -> str:
    """`a.b[3].c` → `a.b[3]` → `a.b` → `a` → ``."""
    if key.endswith("]"):
        return key[: key.rindex("[")]
    return key.rpartition(".")[0]


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; in a config that silently drops a value, so it is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key '{key}'")
        out[key] = value
    return out


def read_mapping(path: Path, kind: str) -> dict[str, Any]:
    """One file as a dict (an empty file is `{}`); every problem is a one-line `UserError` naming the file."""
    file = str(path)
    if not path.is_file():
        raise UserError(f"{kind} not found", file=file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the {kind}: {e}", file=file) from None
    if path.suffix == ".json":
        try:
            data = json.loads(text, object_pairs_hook=_unique_pairs) if text.strip() else None
        except ValueError as e:  # JSONDecodeError is a ValueError, and so is a duplicate key
            raise UserError(f"invalid JSON: {e}", file=file) from None
    else:
        try:
            data = yaml.load(text, Loader=_UniqueKeyLoader)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
            where = f"line {mark.line + 1}: " if mark is not None else ""
            problem = getattr(e, "problem", None) or " ".join(str(e).split())
            raise UserError(f"{where}invalid YAML: {problem}", file=file) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"a {kind} must be a mapping of keys to values, got {type(data).__name__}", file=file)
    return data


def leaf_keys(data: Mapping[str, Any], prefix: str = "", whole: frozenset[str] = frozenset()) -> list[str]:
    """Dotted keys of the values in `data`; mappings are descended into, except the keys in `whole`."""
    keys = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and dotted not in whole:
            keys.extend(leaf_keys(value, dotted + ".", whole))
        else:
            keys.append(dotted)
    return keys


def deep_merge(base: dict[str, Any], child: dict[str, Any], whole: frozenset[str], prefix: str = "") -> dict[str, Any]:
    """`child` over `base`: mappings merge key by key (except the dotted keys in `whole`), anything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(out.get(key), dict) and dotted not in whole:
            out[key] = deep_merge(out[key], value, whole, dotted + ".")
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_tree(
    path: Path,
    kind: str,
    *,
    whole: frozenset[str] = frozenset(),
    on_inherit: Callable[[dict[str, Any], Path], None] | None = None,
    env: Mapping[str, str] | None = None,
    _seen: tuple[Path, ...] = (),
) -> tuple[dict[str, Any], Origins]:
    """`path` with its `inherit:` chain merged in, and the file each key came from.

    `on_inherit(child_data, path)` may adjust a file that inherits before the merge (a recipe's `name` is its own,
    never its base's)."""
    resolved = path.resolve()
    if resolved in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, resolved))
        raise UserError(f"files inherit from each other in a loop: {chain}", file=str(path), field=INHERIT)
    data = read_mapping(path, kind)
    origin = Origins({key: str(path) for key in leaf_keys(data, whole=whole)})
    base_name = data.pop(INHERIT, None)
    origin.pop(INHERIT, None)
    if base_name is None:
        return data, origin
    if not isinstance(base_name, str) or not base_name.strip():
        raise UserError(
            f"must be the path of a base file (relative to {path.name}'s folder)", file=str(path), field=INHERIT
        )
    base_path = path.parent / expand(base_name, file=str(path), field=INHERIT, env=env)
    if not base_path.is_file():
        raise UserError(f"base file {base_path} not found", file=str(path), field=INHERIT)
    base, base_origin = load_tree(
        base_path, kind, whole=whole, on_inherit=on_inherit, env=env, _seen=(*_seen, resolved)
    )
    if on_inherit is not None:
        on_inherit(data, path)
        origin.update({key: str(path) for key in leaf_keys(data, whole=whole) if key not in origin})
    merged = deep_merge(base, data, whole)
    replaced = [k for k in origin if k in whole]  # a key replaced whole takes nothing from the base
    kept = {k: f for k, f in base_origin.items() if not any(k == r or k.startswith(r + ".") for r in replaced)}
    return merged, Origins({**kept, **origin})
