"""The config base every cptkit file type derives from: `Section` for parts, `ConfigModel` for a whole file.

In the spirit of OLMo-core's `Config.from_file(path, overrides)`, one call reads any config:

    from cptkit.train.schema import Recipe
    recipe = Recipe.from_file("recipes/tiny_cpu.yaml", ["training.train_iters=30"])

and every file type gets the same behaviour, in this order:

1. read YAML/JSON (duplicate keys refused), follow `inherit:` (relative to the file), remember which file set each key;
2. merge `key=value` overrides (typed by the schema, dotted paths, "command line" as their file);
3. refuse unknown keys, suggesting the closest known one ("did you mean");
4. expand `${VAR}` / `${VAR:-default}` in every string (`$$` is a literal `$`; an unset variable is an error naming
   the field);
5. validate with pydantic; the first problem becomes one `FILE: FIELD: message` line (`cptkit.config.errors`);
6. `loaded()` lets the class finish (record its file, run rules that span fields).

Torch-free: the launcher and `cptkit mix` use it on login nodes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from cptkit.config.errors import user_error
from cptkit.config.keys import Loc, check_keys, field_path
from cptkit.config.overrides import apply_overrides
from cptkit.config.source import Origins, load_tree
from cptkit.util.envvars import expand


class Section(BaseModel):
    """A part of a config: an unknown key is an error, never silently ignored. (Subclasses add their own
    `model_config` options, e.g. `frozen=True`; pydantic merges them with this one.)"""

    model_config = ConfigDict(extra="forbid")


class ConfigModel(Section):
    """A whole config file. Subclasses set `file_kind` and may override the hooks below."""

    file_kind: ClassVar[str] = "config file"  # "FILE: <file_kind> not found"
    merge_whole: ClassVar[frozenset[str]] = frozenset()  # dotted keys an inheriting file replaces, never merges
    expand_variables: ClassVar[bool] = True  # False for files cptkit writes itself (their `$` is data)

    # -- hooks ------------------------------------------------------------------------------------------------------
    @classmethod
    def on_inherit(cls, data: dict[str, Any], path: Path) -> None:
        """Adjust the raw data of a file that has `inherit:`, before it is merged over its base."""

    @classmethod
    def variables(cls, data: dict[str, Any]) -> dict[str, str]:
        """Extra `${NAME}`s (beside the environment) available in this file's strings, from its merged data."""
        return {}

    def loaded(self, file: str, origin: Origins) -> None:
        """Called once the file validated: record where it came from, run checks that span fields."""

    # -- loading ----------------------------------------------------------------------------------------------------
    @classmethod
    def from_file(
        cls, path: str | os.PathLike, overrides: Sequence[str] = (), *, env: Mapping[str, str] | None = None
    ) -> Self:
        """Read, inherit, override, check keys, expand, validate; raises `UserError` naming file and field."""
        data, origin = load_tree(Path(path), cls.file_kind, whole=cls.merge_whole, on_inherit=cls.on_inherit, env=env)
        return cls.from_data(data, origin, overrides, file=str(path), env=env)

    @classmethod
    def from_data(
        cls,
        data: dict[str, Any],
        origin: Origins | None = None,
        overrides: Sequence[str] = (),
        *,
        file: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Self:
        """Steps 2–6 on data already read (`file` names it in errors when `origin` does not know a key)."""
        origin = Origins(origin or {})

        def file_of(key: str) -> str | None:
            return origin.file_of(key, file)

        data, origin = apply_overrides(data, origin, overrides)
        check_keys(data, cls, file_of)
        variables = None
        if cls.expand_variables:
            variables = dict(os.environ if env is None else env)
            for name, value in cls.variables(data).items():
                variables.setdefault(name, value)
            data = expand_tree(data, (), file_of, variables)
        try:
            obj = cls.model_validate(data)
        except ValidationError as e:
            raise user_error(e, file_of) from None
        if variables is not None:
            expand_defaults(obj, (), file_of, variables)
        obj.loaded(file or "", origin)
        return obj


def expand_tree(node: Any, loc: Loc, file_of, env: Mapping[str, str]) -> Any:
    """`${VAR}` expanded in every string of `node` (keys are left alone)."""
    if isinstance(node, str):
        field = field_path(loc) or None
        return expand(node, file=file_of(field or ""), field=field, env=env)
    if isinstance(node, dict):
        return {k: expand_tree(v, (*loc, str(k)), file_of, env) for k, v in node.items()}
    if isinstance(node, list):
        return [expand_tree(v, (*loc, i), file_of, env) for i, v in enumerate(node)]
    return node


def expand_defaults(obj: BaseModel, loc: Loc, file_of, env: Mapping[str, str]) -> None:
    """`${VAR}` in the defaults the file did not override (a recipe's `run_dir: runs/${name}`).

    Written into the validated object's `__dict__`: the value is the schema's own default, already validated, and
    frozen models refuse `setattr`."""
    for name in type(obj).model_fields:
        value = getattr(obj, name)
        if isinstance(value, BaseModel):
            expand_defaults(value, (*loc, name), file_of, env)
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    expand_defaults(item, (*loc, name, i), file_of, env)
        elif isinstance(value, str) and "$" in value and name not in obj.model_fields_set:
            obj.__dict__[name] = expand_tree(value, (*loc, name), file_of, env)
