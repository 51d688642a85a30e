"""Cluster profiles: one YAML per cluster (`launch/*.yaml`) describing how jobs run there.

A profile states the scheduler, GPUs per node, the launcher, the software environment, the walltime limit, site
variables and the site-only resource directives. `${VAR}` references are expanded from the environment when the
profile is loaded, so an unset site variable (a group, a partition, a container path) is an error before anything is
rendered or submitted.

    from cptkit.launch.profile import load_profile
    profile = load_profile("launch/abci3.yaml")

Resource directives are written in the profile, not in cptkit, because they are what differs between sites
(TSUBAME's `-l node_f=N` and `-g GROUP`, ABCI's `-q rt_HF -l select=N:ncpus=192:ngpus=8`). They may use the
placeholders `{nodes}`, `{gpus_per_node}`, `{cpus_per_node}`, `{walltime}` and `{site_NAME}` for a site variable.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from cptkit.config import ConfigModel, Section
from cptkit.errors import UserError
from cptkit.launch import schedulers

_WALLTIME = re.compile(r"^(\d+):([0-5]\d):([0-5]\d)$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def walltime_seconds(text: str) -> int:
    """`"HH:MM:SS"` (hours may exceed 24) → seconds; raises ValueError otherwise."""
    m = _WALLTIME.match(text.strip())
    if not m:
        raise ValueError(f"walltime must be HH:MM:SS, got {text!r}")
    h, mi, s = (int(g) for g in m.groups())
    return h * 3600 + mi * 60 + s


def format_walltime(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _Strict(Section):
    model_config = ConfigDict(frozen=True)


class Launcher(_Strict):
    """How one process per GPU is started.

    - `mpirun`: Open MPI over a hostfile; the trainer maps `OMPI_COMM_WORLD_*` to its ranks (TSUBAME, ABCI).
    - `srun`: one SLURM task per GPU; the script maps `SLURM_PROCID`/`SLURM_LOCALID`/`SLURM_NTASKS`.
    - `torchrun`: one torchrun per node with a c10d rendezvous on the first node (single node: `local`).
    """

    kind: Literal["mpirun", "srun", "torchrun"]
    master_port: int = Field(29500, ge=1024, le=65535)
    extra_args: list[str] = Field(default_factory=list, description="appended to the launcher's own arguments")
    export_env: list[str] = Field(
        default_factory=list, description="mpirun only: extra variables passed with -x (MASTER_ADDR/PORT always are)"
    )


class Environment(_Strict):
    """The software a job runs in: modules, then a venv, or a container (apptainer/singularity, enroot via pyxis)."""

    kind: Literal["none", "venv", "modules", "apptainer", "singularity", "pyxis"] = "none"
    modules: list[str] = Field(default_factory=list, description="`module load` in this order (any kind)")
    venv: str | None = Field(None, description="virtualenv directory to activate (venv, modules)")
    image: str | None = Field(None, description="container image (.sif for apptainer/singularity, .sqsh for pyxis)")
    binds: list[str] = Field(default_factory=list, description="container bind mounts, `SRC[:DST]`")
    setup: list[str] = Field(default_factory=list, description="extra shell lines run before launching")

    @model_validator(mode="after")
    def _check(self) -> Environment:
        if self.kind in ("apptainer", "singularity", "pyxis") and not self.image:
            raise ValueError(f"environment.kind {self.kind!r} needs environment.image")
        if self.kind == "venv" and not self.venv:
            raise ValueError("environment.kind 'venv' needs environment.venv")
        return self


class Resources(_Strict):
    """Site directives per job kind (without the `#SBATCH`/`#PBS`/`#$` prefix)."""

    train: list[str] = Field(default_factory=list, description="multi-node GPU training job")
    cpu: list[str] = Field(default_factory=list, description="CPU job: tokenization shards, merge, conversion")
    eval: list[str] | None = Field(None, description="one-node GPU evaluation task (default: train with nodes=1)")


class Profile(ConfigModel):
    model_config = ConfigDict(frozen=True)
    file_kind: ClassVar[str] = "cluster profile"

    name: str
    description: str = ""
    scheduler: Literal[tuple(schedulers.SCHEDULERS)]  # type: ignore[valid-type]  # one class each in schedulers.py
    gpus_per_node: int = Field(ge=1)
    cpus_per_node: int = Field(ge=1)
    max_nodes: int | None = Field(None, ge=1)
    max_walltime: str = Field(description="the site's limit, HH:MM:SS")
    default_walltime: str | None = Field(None, description="used when --walltime is not given (default: max)")
    checkpoint_lead_seconds: int = Field(
        300, ge=0, description="signal the trainer this long before the walltime ends, so it can save"
    )
    max_requeues: int = Field(20, ge=0, description="SLURM: requeue a pre-empted job at most this many times")
    launcher: Launcher
    environment: Environment = Environment()
    site: dict[str, str] = Field(default_factory=dict, description="site variables, usable as {site_NAME}")
    resources: Resources = Resources()
    env: dict[str, str] = Field(default_factory=dict, description="variables exported in every job (NCCL, EFA, ...)")
    cptkit: str = Field("cptkit", description="how to call cptkit inside the job (e.g. a path, or `python -m ...`)")
    submit_args: list[str] = Field(default_factory=list, description="extra arguments for sbatch/qsub")

    @field_validator("max_walltime", "default_walltime")
    @classmethod
    def _walltime(cls, v: str | None) -> str | None:
        if v is not None:
            walltime_seconds(v)
        return v

    @model_validator(mode="after")
    def _check(self) -> Profile:
        sched = schedulers.get(self.scheduler)
        if self.launcher.kind not in sched.launchers:
            kinds = ", ".join(sorted(sched.launchers))
            raise ValueError(
                f"scheduler {self.scheduler!r} cannot start launcher.kind {self.launcher.kind!r}; use {kinds}"
            )
        if self.environment.kind == "pyxis" and self.launcher.kind != "srun":
            raise ValueError("environment.kind 'pyxis' (enroot) works through srun: set launcher.kind: srun")
        lead, limit = self.checkpoint_lead_seconds, walltime_seconds(self.max_walltime)
        if lead >= limit:
            raise ValueError(f"checkpoint_lead_seconds ({lead}) must be shorter than max_walltime ({limit} s)")
        return self

    def placeholders(self, **job: Any) -> dict[str, str]:
        out = {f"site_{k}": v for k, v in self.site.items()}
        out.update(gpus_per_node=str(self.gpus_per_node), cpus_per_node=str(self.cpus_per_node))
        out.update({k: str(v) for k, v in job.items()})
        return out

    def directives(self, kind: str, **job: Any) -> list[str]:
        """The site's resource directives for a job kind, with placeholders filled."""
        lines = getattr(self.resources, kind)
        if lines is None:  # eval defaults to one node of the training resources
            lines, job = self.resources.train, {**job, "nodes": 1}
        values = self.placeholders(**job)

        def sub(m: re.Match) -> str:
            if m.group(1) not in values:
                known = ", ".join(sorted(values))
                raise UserError(f"unknown placeholder {{{m.group(1)}}} (known: {known})", field=f"resources.{kind}")
            return values[m.group(1)]

        return [_PLACEHOLDER.sub(sub, line) for line in lines]


def load_profile(path: str | Path) -> Profile:
    """Read, `${VAR}`-expand and validate a profile; every problem is a one-line `UserError` naming file and field
    (`Profile.from_file`: `inherit:` and "did you mean" work as in recipes and mixtures)."""
    return Profile.from_file(path)
