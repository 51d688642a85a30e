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
    report:                         # how `cptkit report` lays the table out (optional; never changes a score)
      decimals: 3                   # as the seed table prints them (seed 003: 3; seeds 000, 001, 004: 4)
      averages:                     # the seed's average columns, after the benchmarks; [] for none
        - {name: En Avg}            # over every column; or `columns: [A, B]`
      tables:                       # optional: split the columns into several tables, as seed 004 does
        - {title: "Code completion (Japanese)", columns: [JMultiPL-E-py, ...]}

Try it on a CPU machine:  python -c "from cptkit.eval.suites import load_suite; print(load_suite('en'))"
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

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
    # A known difference between this column and the seed table it reproduces (the template may be exact for another
    # seed): carried into every result and footnoted in the report as "not comparable".
    not_comparable: str = ""

    @field_validator("metric")
    @classmethod
    def _metric_has_filter(cls, v: str) -> str:
        if "," not in v:
            raise ValueError(f"write the lm-eval results key 'METRIC,FILTER' (e.g. '{v},none'), got {v!r}")
        return v


class ReportAverage(Section):
    name: str = Field(min_length=1)
    columns: list[str] | None = None  # None: every column of the suite


class ReportTable(Section):
    title: str = Field(min_length=1)
    columns: list[str] = Field(min_length=1)


class ReportLayout(Section):
    """The seed table's layout. Defaults (4 decimals, one "Avg" over all columns) serve suites no seed prints."""

    decimals: int = Field(default=4, ge=0, le=8)
    averages: list[ReportAverage] = Field(default_factory=lambda: [ReportAverage(name="Avg")])
    tables: list[ReportTable] = Field(default_factory=list)

    def average_columns(self, average: ReportAverage, columns: list[str]) -> list[str]:
        return list(average.columns) if average.columns is not None else list(columns)


class Suite(ConfigModel):
    file_kind: ClassVar[str] = "suite file"

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    tasks: list[SuiteTask] = Field(min_length=1)
    report: ReportLayout = Field(default_factory=ReportLayout)
    sha256: str = ""  # of the suite's name and tasks, recorded in results

    @model_validator(mode="after")
    def _report_names_columns(self) -> Suite:
        columns = [t.column for t in self.tasks]
        named = [
            (f"report.averages[{i}].columns", c) for i, a in enumerate(self.report.averages) for c in a.columns or []
        ]
        named += [(f"report.tables[{i}].columns", c) for i, t in enumerate(self.report.tables) for c in t.columns]
        for where, column in named:
            if column not in columns:
                raise ValueError(f"{where}: {column!r} is not a column of the suite ({', '.join(columns)})")
        clash = sorted({a.name for a in self.report.averages} & set(columns))
        if clash:
            raise ValueError(f"report.averages: {', '.join(clash)} is also a benchmark column")
        if self.report.tables:
            listed = [c for t in self.report.tables for c in t.columns]
            missing = [c for c in columns if c not in listed]
            if missing:
                raise ValueError(f"report.tables: columns in no table: {', '.join(missing)}")
        return self

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
        # Over what decides the scores (name and tasks), not the file: editing comments or the report layout must not
        # make hours of finished evaluations stale.
        scored = {"name": self.name, "tasks": [t.model_dump(mode="json") for t in self.tasks]}
        self.sha256 = hashlib.sha256(json.dumps(scored, sort_keys=True).encode()).hexdigest()


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
