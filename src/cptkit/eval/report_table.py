"""The seed-style results tables of `cptkit report`: Markdown and CSV, laid out as the suite's seed table.

A suite's `report:` section (`cptkit.eval.suites.ReportLayout`) says how its seed prints the table: the decimals
(seed 003: 3; seeds 000, 001, 004: 4), the average columns and what they average ("Ja Avg" / "En Avg" over all ten
columns in seed 003; none in seeds 000, 001 and 004; "code avg" in the `code` suite), and, for seed 004, the split
into several tables. Rows: one per evaluated checkpoint (run, iteration, tokens trained in adaptive units), runs side
by side; with `reference=True` the seed's published rows first (`reference_scores.yaml`, transcribed from the seed
files and checked against them by tests/eval/test_report_seeds.py), marked "(published)". A score cptkit knows is
not comparable with the seed's (a packaged stand-in split, a known harness difference) carries a footnote number,
and the footnote says why.

    python -c "from cptkit.eval.report_table import layout_for; print(layout_for([], 'swallow_v05_ja'))"
"""

from __future__ import annotations

import csv
import importlib.resources
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cptkit.eval.suites import ReportLayout, ReportTable, load_suite, shipped_suites

if TYPE_CHECKING:
    from cptkit.eval.report import RunData

PUBLISHED = " (published)"


@dataclass(frozen=True)
class NotComparable:
    """A score with a known difference from the seed's harness: shown with a footnote giving the reasons."""

    value: float
    reasons: tuple[str, ...]


def layout_for(runs: list[RunData], suite: str) -> ReportLayout:
    """The shipped suite's current layout (a layout never changes a score, so it applies to old results too), else
    the one recorded in the results, else the default."""
    if suite in shipped_suites():
        return load_suite(suite).report
    for run in runs:
        for doc in reversed(run.evals.get(suite, [])):
            if isinstance(doc.get("report"), dict):
                return ReportLayout.model_validate(doc["report"])
    return ReportLayout()


def suite_columns(runs: list[RunData], suite: str) -> tuple[list[str], dict[str, str]]:
    """Benchmark columns in the suite's (the seed table's) order, then any others found in the results; and labels."""
    columns = [t.column for t in load_suite(suite).tasks] if suite in shipped_suites() else []
    labels: dict[str, str] = {}
    for run in runs:
        for doc in run.evals.get(suite, []):
            for col, task in doc.get("tasks", {}).items():
                labels.setdefault(col, task.get("label", ""))
            for c in [*doc.get("tasks", {}), *doc.get("scores", {})]:
                if c not in columns:
                    columns.append(c)
    if suite in shipped_suites():
        for t in load_suite(suite).tasks:
            labels.setdefault(t.column, t.label)
    return columns, labels


def tables_of(layout: ReportLayout, columns: list[str]) -> list[ReportTable]:
    """The layout's tables (columns it lists that no result has are shown as "–"), plus one for unlisted columns."""
    if not layout.tables:
        return [ReportTable(title="all", columns=columns)] if columns else []
    listed = {c for t in layout.tables for c in t.columns}
    extra = [c for c in columns if c not in listed]
    return [*layout.tables, *([ReportTable(title="other columns", columns=extra)] if extra else [])]


def averages_in(layout: ReportLayout, table: ReportTable, columns: list[str]) -> list[tuple[str, list[str]]]:
    """(name, columns) of each average shown in `table`: those whose columns all belong to it."""
    out = []
    for a in layout.averages:
        cols = layout.average_columns(a, columns)
        if cols and set(cols) <= set(table.columns):
            out.append((a.name, cols))
    return out


def _mean(values: list) -> float | NotComparable | None:
    if not values or any(v is None for v in values):
        return None  # an average over fewer columns than the seed's would not be the seed's average
    plain = [v.value if isinstance(v, NotComparable) else v for v in values]
    mean = sum(plain) / len(plain)
    if any(isinstance(v, NotComparable) for v in values):
        return NotComparable(mean, ("averages a column that is not comparable",))
    return mean


def _flagged(doc: dict, column: str):
    value = doc.get("scores", {}).get(column)
    reasons = (doc.get("not_comparable") or {}).get(column)
    return NotComparable(value, tuple(reasons)) if value is not None and reasons else value


def _published(suite: str) -> dict:
    import yaml

    text = (importlib.resources.files("cptkit.eval") / "reference_scores.yaml").read_text(encoding="utf-8")
    published = yaml.safe_load(text)
    entry = published.get(suite) or {}
    return published.get(entry.get("same_as"), entry)


def reference_rows(suite: str, columns: list[str], averages: list[tuple[str, list[str]]] = ()) -> list[list]:
    """The seed's published rows for `suite` in these columns; an average the seed printed is shown as printed."""
    from cptkit.eval.report import format_tokens

    entry = _published(suite)
    rows = []
    for row in entry.get("rows", []):
        values = [row["scores"].get(c) for c in columns]
        avgs = [
            row["average"]
            if name == entry.get("average") and "average" in row
            else _mean([row["scores"].get(c) for c in cols])
            for name, cols in averages
        ]
        tokens = format_tokens(row["tokens"]) if row.get("tokens") else "–"
        rows.append([f"{row['name']}{PUBLISHED}", "–", tokens, *values, *avgs])
    return rows


def table_rows(
    runs: list[RunData], suite: str, table: ReportTable, layout: ReportLayout, *, reference: bool = False
) -> tuple[list[str], list[list]]:
    from cptkit.eval.report import format_tokens

    columns, _ = suite_columns(runs, suite)
    averages = averages_in(layout, table, columns)
    header = ["Run", "Iteration", "Tokens", *table.columns, *(name for name, _ in averages)]
    rows = reference_rows(suite, table.columns, averages) if reference else []
    for run in runs:
        for doc in run.evals.get(suite, []):
            values = [_flagged(doc, c) for c in table.columns]
            avgs = [_mean([_flagged(doc, c) for c in cols]) for _, cols in averages]
            tokens = doc["model"].get("consumed_tokens")
            rows.append([run.name, doc["model"].get("iteration"), format_tokens(tokens), *values, *avgs])
    return header, rows


class _Footnotes:
    """Numbers each distinct reason once per table: "0.2160 [1]" ... "[1] not comparable with the seed: why"."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def mark(self, v: NotComparable) -> str:
        for r in v.reasons:
            if r not in self.reasons:
                self.reasons.append(r)
        return "".join(f" [{self.reasons.index(r) + 1}]" for r in v.reasons)

    def lines(self) -> list[str]:
        return [f"[{i}] not comparable with the seed's table: {r}" for i, r in enumerate(self.reasons, 1)]


def _cell(v, decimals: int, notes: _Footnotes) -> str:
    if v is None:
        return "–"
    if isinstance(v, NotComparable):
        return f"{v.value:.{decimals}f}{notes.mark(v)}"
    return f"{v:.{decimals}f}" if isinstance(v, float) else str(v)


def _md(header: list[str], label_row: list[str] | None, rows: list[list], decimals: int, notes: _Footnotes) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    if label_row:
        lines.append("|" + "|".join(f" {c} " if c else " " for c in label_row) + "|")
    lines += ["| " + " | ".join(_cell(v, decimals, notes) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_table(runs: list[RunData], suite: str, *, reference: bool = False) -> str:
    layout = layout_for(runs, suite)
    columns, labels = suite_columns(runs, suite)
    parts = [f"## {suite}"]
    for table in tables_of(layout, columns):
        notes = _Footnotes()
        header, rows = table_rows(runs, suite, table, layout, reference=reference)
        n_avg = len(header) - 3 - len(table.columns)
        label_row = ["", "", "", *(labels.get(c, "") for c in table.columns), *[""] * n_avg]
        label_row = label_row if any(label_row) else None
        last = {row[0]: row for row in rows if not str(row[0]).endswith(PUBLISHED)}  # each run's last checkpoint
        if table.title != "all":
            parts.append(f"### {table.title}")
        parts.append(_md(header, label_row, rows, layout.decimals, notes))
        parts.append("Last evaluated checkpoint of each run:")
        parts.append(_md(header, label_row, list(last.values()), layout.decimals, notes))
        avg_note = "; ".join(f"{n} = mean of {', '.join(c)}" for n, c in averages_in(layout, table, columns))
        parts.append(
            f"{layout.decimals} decimals, as the seed table. – = not evaluated"
            + (f" (no average then). {avg_note}." if avg_note else ".")
        )
        if notes.reasons:
            parts.append("\n".join(notes.lines()))
    return "\n\n".join(parts) + "\n"


def csv_table(runs: list[RunData], suite: str, *, reference: bool = False) -> str:
    """One CSV over every column and average, full precision; reasons of not comparable scores in the last column."""
    layout = layout_for(runs, suite)
    columns, _ = suite_columns(runs, suite)
    whole = ReportTable(title="all", columns=columns)
    header, rows = table_rows(runs, suite, whole, layout.model_copy(update={"tables": []}), reference=reference)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*header, "not comparable"])
    for row in rows:
        reasons = [
            f"{name}: {'; '.join(v.reasons)}"
            for name, v in zip(header, row, strict=True)
            if isinstance(v, NotComparable)
        ]
        cells = ["" if v is None else (v.value if isinstance(v, NotComparable) else v) for v in row]
        writer.writerow([*cells, " | ".join(reasons)])
    return buf.getvalue()
