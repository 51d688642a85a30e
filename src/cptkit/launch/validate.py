"""Checks run before a job is rendered or submitted, so a mistake costs seconds on the login node, not a queue wait.

Each check raises a one-line `UserError` that names the file and field to fix.
"""

from __future__ import annotations

from pathlib import Path

from cptkit.errors import UserError
from cptkit.launch.profile import Profile, walltime_seconds
from cptkit.train.plan import Plan


def load_plan(recipe: str | Path, overrides: list[str] | None = None) -> Plan:
    """The recipe's `Plan`, exactly as `cptkit plan` and `cptkit train` build it (torch-free).

    The Plan owns the batch/parallel arithmetic (TP x PP x CP vs GPUs, GBS vs MBS x DP, heads vs TP, layers vs PP,
    token budget → iterations); the launcher only adds what the cluster decides: nodes and walltime.
    """
    from cptkit.train.plan import make_plan
    from cptkit.train.recipe import load_recipe

    return make_plan(load_recipe(recipe, list(overrides or [])))


def resolve_nodes(plan: Plan, profile: Profile, nodes: int | None) -> int:
    """Nodes for a training job: `--nodes`, else the planned GPUs over the profile's GPUs per node."""
    if nodes is None:
        if plan.world_size % profile.gpus_per_node:
            raise UserError(
                f"{plan.world_size} GPUs is not a whole number of {profile.name} nodes "
                f"({profile.gpus_per_node} GPUs each); change parallel.num_gpus or pass --nodes",
                file=plan.recipe.file_of("parallel.num_gpus"),
                field="parallel.num_gpus",
            )
        nodes = max(1, plan.world_size // profile.gpus_per_node)
    return nodes


def validate_train(plan: Plan, profile: Profile, nodes: int, walltime: str) -> None:
    """The allocation fits the plan: nodes x GPUs per node is the planned world size, within the site's limits."""
    gpn = profile.gpus_per_node
    world = nodes * gpn
    if nodes < 1:
        raise UserError(f"--nodes must be at least 1, got {nodes}")
    if profile.max_nodes is not None and nodes > profile.max_nodes:
        raise UserError(f"{nodes} nodes exceeds the profile's max_nodes {profile.max_nodes}", field="--nodes")
    if world != plan.world_size:
        raise UserError(
            f"{nodes} nodes × {gpn} GPUs per node = {world} GPUs, but the recipe trains on {plan.world_size}",
            file=plan.recipe.file_of("parallel.num_gpus"),
            field="parallel.num_gpus",
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
