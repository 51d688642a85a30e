"""Checks run before a job is rendered or submitted, so a mistake costs seconds on the login node, not a queue wait.

Each check raises a one-line `UserError` that names the file and field to fix.
"""

from __future__ import annotations

from cptkit.errors import UserError
from cptkit.launch.profile import Profile, walltime_seconds
from cptkit.launch.recipe import RecipeView


def resolve_nodes(recipe: RecipeView, profile: Profile, nodes: int | None) -> int:
    """Nodes for a training job: `--nodes`, else the recipe's GPUs over the profile's GPUs per node."""
    if nodes is None:
        if recipe.num_gpus % profile.gpus_per_node:
            raise UserError(
                f"{recipe.num_gpus} GPUs is not a whole number of {profile.name} nodes "
                f"({profile.gpus_per_node} GPUs each); change parallel.num_gpus or pass --nodes",
                file=recipe.path,
                field="parallel.num_gpus",
            )
        nodes = max(1, recipe.num_gpus // profile.gpus_per_node)
    return nodes


def validate_train(recipe: RecipeView, profile: Profile, nodes: int, walltime: str) -> None:
    gpn = profile.gpus_per_node
    world = nodes * gpn
    if nodes < 1:
        raise UserError(f"--nodes must be at least 1, got {nodes}")
    if profile.max_nodes is not None and nodes > profile.max_nodes:
        raise UserError(f"{nodes} nodes exceeds the profile's max_nodes {profile.max_nodes}", field="--nodes")
    if world != recipe.num_gpus:
        raise UserError(
            f"{nodes} nodes × {gpn} GPUs per node = {world} GPUs, but the recipe trains on {recipe.num_gpus}",
            file=recipe.path,
            field="parallel.num_gpus",
        )
    tp, pp, cp = recipe.tensor_model_parallel_size, recipe.pipeline_model_parallel_size, recipe.context_parallel_size
    model_parallel = tp * pp * cp
    if world % model_parallel:
        raise UserError(
            f"TP {tp} × PP {pp} × CP {cp} = {model_parallel} does not divide the world size {world}",
            file=recipe.path,
            field="parallel",
        )
    dp = world // model_parallel
    gbs, mbs = recipe.global_batch_size, recipe.micro_batch_size
    if gbs % (mbs * dp):
        raise UserError(
            f"global batch {gbs} is not divisible by micro batch {mbs} × data-parallel size {dp} = {mbs * dp}",
            file=recipe.path,
            field="training.global_batch_size",
        )
    validate_walltime(profile, walltime)


def validate_walltime(profile: Profile, walltime: str) -> int:
    try:
        seconds = walltime_seconds(walltime)
    except ValueError as e:
        raise UserError(str(e), field="--walltime") from None
    limit = walltime_seconds(profile.max_walltime)
    if seconds > limit:
        raise UserError(
            f"walltime {walltime} exceeds {profile.name}'s limit {profile.max_walltime}", field="--walltime"
        )
    if seconds <= profile.checkpoint_lead_seconds:
        raise UserError(
            f"walltime {walltime} leaves no time to train before the checkpoint signal "
            f"({profile.checkpoint_lead_seconds} s before the end)",
            field="--walltime",
        )
    return seconds
