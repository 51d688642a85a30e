"""Evaluation suites: which task templates run with how many shots, and which metric fills each table column.

A suite is a YAML file; the shipped ones live in `cptkit/eval/suites/` (`en`, `ja`, `quick`) and `--suite` also takes
a path to your own:

    name: en
    description: Swallow English tasks (seed 003)
    tasks:
      - column: OpenBookQA          # the report's column header
        template: openbookqa        # cptkit/eval/tasks/openbookqa.yaml
        shots: 4
        metric: acc,none            # key in lm-eval's results for this entry (metric,filter)
        label: 4-shot Acc           # shown under the header in the report
        limit: null                 # evaluate only the first N documents (smoke tests)
        overrides: {}               # extra lm-eval task fields, e.g. {generation_kwargs: {max_gen_toks: 32}}

Try it on a CPU machine:  python -c "from cptkit.eval.suites import load_suite; print(load_suite('en'))"
"""

from __future__ import annotations

import hashlib
import importlib.resources
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from cptkit.config import ConfigModel, Origins, Section
from cptkit.errors import UserError


class SuiteTask(Section):
    column: str = Field(min_length=1)
    template: str = Field(min_length=1)
    shots: int = Field(ge=0)
    metric: str
    label: str = ""
    limit: int | None = Field(default=None, ge=1)
    overrides: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metric")
    @classmethod
    def _metric_has_filter(cls, v: str) -> str:
        if "," not in v:
            raise ValueError(f"write the lm-eval results key 'METRIC,FILTER' (e.g. '{v},none'), got {v!r}")
        return v


class Suite(ConfigModel):
    file_kind: ClassVar[str] = "suite file"

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    tasks: list[SuiteTask] = Field(min_length=1)
    sha256: str = ""  # of the suite file, recorded in results

    @field_validator("tasks")
    @classmethod
    def _unique_columns(cls, v: list[SuiteTask]) -> list[SuiteTask]:
        columns = [t.column for t in v]
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        if dupes:
            raise ValueError(f"duplicate columns: {', '.join(dupes)}")
        # Columns may read several metrics of one run of a template (pass@1 and pass@10 of the same samples); the
        # template is then run once, so it must be configured identically.
        first: dict[str, SuiteTask] = {}
        for t in v:
            seen = first.setdefault(t.template, t)
            if (seen.shots, seen.limit, seen.overrides) != (t.shots, t.limit, t.overrides):
                raise ValueError(
                    f"columns {seen.column!r} and {t.column!r} use template {t.template!r} with different shots, "
                    "limit or overrides; a template runs once per suite"
                )
        return v

    def loaded(self, file: str, origin: Origins) -> None:
        self.sha256 = hashlib.sha256(Path(file).read_bytes()).hexdigest()


def suites_dir() -> Path:
    return Path(str(importlib.resources.files("cptkit.eval") / "suites"))


def shipped_suites() -> list[str]:
    return sorted(p.stem for p in suites_dir().glob("*.yaml"))


def load_suite(name_or_path: str) -> Suite:
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = suites_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise UserError(
                f"unknown suite {name_or_path!r}; shipped: {', '.join(shipped_suites())}, or give a .yaml path",
                field="--suite",
            )
    return Suite.from_file(path)
