"""The few recipe fields the launcher needs, read through the trainer's torch-free loader.

`read_recipe(path, overrides)` calls `cptkit.train.recipe.load_recipe`, so the launcher validates exactly the recipe
the trainer will run (`inherit:`, `${VAR}` expansion and `key=value` overrides included) without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cptkit.errors import UserError


@dataclass(frozen=True)
class RecipeView:
    path: str
    name: str
    run_dir: str
    num_gpus: int
    tensor_model_parallel_size: int
    pipeline_model_parallel_size: int
    context_parallel_size: int
    global_batch_size: int
    micro_batch_size: int
    train_iters: int | None  # None when the recipe gives training.train_tokens instead
    train_tokens: str | None = None


def read_recipe(path: str | Path, overrides: list[str] | None = None) -> RecipeView:
    from cptkit.train.recipe import load_recipe  # torch-free by contract

    path = Path(path)
    if not path.is_file():
        raise UserError("recipe not found", file=str(path))
    r = load_recipe(path, list(overrides or []))
    tokens = getattr(r.training, "train_tokens", None)
    return RecipeView(
        path=str(path),
        name=r.name,
        run_dir=str(r.run_dir),
        num_gpus=r.parallel.num_gpus,
        tensor_model_parallel_size=r.parallel.tensor_model_parallel_size,
        pipeline_model_parallel_size=r.parallel.pipeline_model_parallel_size,
        context_parallel_size=r.parallel.context_parallel_size,
        global_batch_size=r.training.global_batch_size,
        micro_batch_size=r.training.micro_batch_size,
        train_iters=r.training.train_iters,
        train_tokens=None if tokens is None else str(tokens),
    )
