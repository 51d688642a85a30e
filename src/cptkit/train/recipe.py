"""Training recipes: a typed schema, `inherit:` from a base recipe, and `key=value` overrides.

A recipe is a YAML file under `recipes/`. It may start with `inherit: BASE.yaml` (a path relative to the recipe's own
directory); the base is loaded first and the recipe's keys are merged over it, section by section. Overrides from the
command line (`training.train_iters=100`) are merged last; their values are parsed as YAML scalars (`1e-4`, `true`,
`null`) and then checked by the same schema, so a wrong type names the key. An unknown key anywhere (`model.config`'s
ModelConfig keys included) is an error that suggests the closest known key. `${VAR}` expands in every string;
`${name}` is the recipe's name. All of this is `cptkit.config`, shared with every other config file.

This module imports neither torch nor megatron-core: the launcher renders jobs from it on a login node.

    from cptkit.train.recipe import load_recipe
    recipe = load_recipe("recipes/tiny_cpu.yaml", ["training.train_iters=30"])
    recipe.parallel.num_gpus, recipe.training.global_batch_size, recipe.run_dir
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from cptkit.config.source import COMMAND_LINE
from cptkit.train.schema import Recipe, known_keys

__all__ = ["COMMAND_LINE", "Recipe", "known_keys", "load_recipe", "recipe_to_dict", "resolved_yaml"]


def load_recipe(
    path: str | os.PathLike, overrides: Sequence[str] = (), *, env: Mapping[str, str] | None = None
) -> Recipe:
    """Load `path` (following `inherit:`), apply `key=value` overrides, check keys, expand `${VAR}`, validate.

    Raises `UserError` naming the file (or "command line") and the dotted key for any mistake. This is
    `Recipe.from_file` (cptkit.config): mixtures, profiles, specs and suites load the same way.
    """
    return Recipe.from_file(path, overrides, env=env)


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The resolved recipe as plain data (what `recipe.resolved.yaml` holds), without `inherit`."""
    return recipe.model_dump(mode="json", exclude={"inherit"})


def resolved_yaml(recipe: Recipe) -> str:
    """The resolved recipe as YAML, in schema order."""
    return yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False, default_flow_style=False, width=120)
