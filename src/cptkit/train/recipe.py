"""Training recipes: a typed schema, `inherit:` from a base recipe, and `key=value` overrides.

A recipe is a YAML file under `recipes/`. It may start with `inherit: BASE.yaml` (a path relative to the recipe's own
directory); the base is loaded first and the recipe's keys are merged over it, section by section. Overrides from the
command line (`training.train_iters=100`) are merged last; their values are parsed as YAML scalars (`1e-4`, `true`,
`null`) and then checked by the same schema, so a wrong type names the key. An unknown key anywhere is an error that
suggests the closest known key.

This module imports neither torch nor megatron-core: the launcher renders jobs from it on a login node.

    from cptkit.train.recipe import load_recipe
    recipe = load_recipe("recipes/tiny_cpu.yaml", ["training.train_iters=30"])
    recipe.parallel.num_gpus, recipe.training.global_batch_size, recipe.run_dir
"""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cptkit.errors import UserError
from cptkit.train.schema import Recipe, known_keys
from cptkit.util.envvars import expand

__all__ = ["Recipe", "apply_overrides", "known_keys", "load_recipe", "recipe_to_dict", "resolved_yaml"]

COMMAND_LINE = "command line"


def load_recipe(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = (), *, env=None) -> Recipe:
    """Load `path` (following `inherit:`), apply `key=value` overrides, validate, and expand `${VAR}` in paths.

    Raises `UserError` naming the file (or "command line") and the dotted key for any mistake.
    """
    path = Path(path)
    data, origin = _load_with_inheritance(path, seen=())
    data, origin = apply_overrides(data, origin, overrides)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        raise _user_error(e, origin, str(path)) from None
    recipe._source_file = str(path)
    recipe._origin = origin
    _expand_paths(recipe, origin, env)
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The resolved recipe as plain data (what `recipe.resolved.yaml` holds), without `inherit`."""
    return recipe.model_dump(mode="json", exclude={"inherit"})


def apply_overrides(
    data: dict[str, Any], origin: dict[str, str], overrides: list[str] | tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Merge `a.b.c=value` strings into `data`; values are YAML scalars (or flow lists/maps)."""
    data, origin = copy.deepcopy(data), dict(origin)
    keys = known_keys()
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(
                f"override {item!r} is not of the form key=value (e.g. training.train_iters=100)", file=COMMAND_LINE
            )
        if key not in keys and not any(k.startswith(key + ".") for k in keys) and not _under_free_dict(key, keys):
            raise UserError(f"unknown key{_suggest(key, keys)}", file=COMMAND_LINE, field=key)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise UserError(f"cannot parse value {raw!r}: {e}", file=COMMAND_LINE, field=key) from None
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
        origin[key] = COMMAND_LINE
    return data, origin


def _under_free_dict(key: str, keys: set[str]) -> bool:
    """`model.config.num_layers=4`: keys below a free-form mapping field (model.config) are checked later."""
    return any(key.startswith(k + ".") for k in keys if k == "model.config")


def _load_with_inheritance(path: Path, seen: tuple[Path, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    resolved = path.resolve()
    if resolved in seen:
        chain = " -> ".join(str(p) for p in (*seen, resolved))
        raise UserError(f"recipes inherit from each other in a loop: {chain}", file=str(path), field="inherit")
    if not path.is_file():
        raise UserError("recipe file not found", file=str(path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserError(f"not valid YAML: {' '.join(str(e).split())}", file=str(path)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"a recipe is a YAML mapping, got {type(data).__name__}", file=str(path))
    origin = {key: str(path) for key in _leaf_keys(data)}
    base_name = data.get("inherit")
    if base_name is None:
        return data, origin
    if not isinstance(base_name, str):
        raise UserError("must be a file name like llama31_8b.yaml", file=str(path), field="inherit")
    base_path = path.parent / base_name
    base, base_origin = _load_with_inheritance(base_path, (*seen, resolved))
    child = {k: v for k, v in data.items() if k != "inherit"}
    if "name" not in child:  # a recipe's name is its own, never its base's
        child["name"] = path.stem
        origin["name"] = str(path)
    merged = _deep_merge(base, child)
    base_origin.update(origin)
    return merged, base_origin


def _deep_merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in child.items():
        # model.config is replaced whole: a model shape is not meant to be half-inherited.
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "config":
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _leaf_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and dotted != "model.config":
            keys.extend(_leaf_keys(value, dotted + "."))
        else:
            keys.append(dotted)
    return keys


def _suggest(key: str, keys: set[str]) -> str:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(key, sorted(keys), n=1, cutoff=0.6)
    if not close:  # the right name under the wrong section: `train_iters` for `training.train_iters`
        by_leaf = [k for k in sorted(keys) if k.rsplit(".", 1)[-1] == leaf]
        close = by_leaf[:1] or difflib.get_close_matches(
            leaf, sorted({k.rsplit(".", 1)[-1] for k in keys}), n=1, cutoff=0.6
        )
        close = [next(k for k in sorted(keys) if k.endswith(close[0]))] if close and close[0] not in keys else close
    return f"; did you mean {close[0]!r}?" if close else ""


def _user_error(e: ValidationError, origin: dict[str, str], default_file: str) -> UserError:
    err = e.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    file = _origin_of(key, origin) or default_file
    if err["type"] == "extra_forbidden":
        return UserError(f"unknown key{_suggest(key, known_keys())}", file=file, field=key)
    message = err["msg"]
    if err["type"] not in ("missing", "value_error", "assertion_error") and "input" in err:
        message = f"{message} (got {err['input']!r})"
    message = message.removeprefix("Value error, ")
    more = len(e.errors()) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return UserError(message, file=file, field=key or None)


def _origin_of(key: str, origin: dict[str, str]) -> str | None:
    while key:
        if key in origin:
            return origin[key]
        hits = [f for k, f in origin.items() if k.startswith(key + ".")]
        if hits:
            return hits[-1]
        key = key.rpartition(".")[0]
    return None


def _expand_paths(recipe: Recipe, origin: dict[str, str], env) -> None:
    """Expand `${VAR}` (and `${name}`, the recipe's name) in every path field."""
    variables = dict(os.environ if env is None else env)
    variables.setdefault("name", recipe.name)
    for key, owner, attr in recipe.path_fields():
        value = getattr(owner, attr)
        if isinstance(value, str):
            setattr(owner, attr, expand(value, file=_origin_of(key, origin), field=key, env=variables))


def resolved_yaml(recipe: Recipe) -> str:
    """The resolved recipe as YAML, in schema order."""
    return yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False, default_flow_style=False, width=120)
