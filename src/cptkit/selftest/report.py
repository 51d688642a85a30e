"""Selftest results: one row per check, printed as a table and written as JSON; the exit code follows the rows.

    rows = [Row("tp2_vs_tp1", PASS, "|dloss| 2.1e-06 <= 1e-04", {"loss_tp1": 11.9, ...})]
    print(table(rows)); write_json("selftest.json", rows, meta); sys.exit(exit_code(rows))

Exit codes: 0 every check passed or was skipped for a stated reason, 1 any check failed (or raised), 2 (set by the
CLI) the machine has no GPU and `--cpu-dry` was not asked for.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cptkit.util.atomic import write_text

PASS, FAIL, SKIP, INFO = "PASS", "FAIL", "SKIP", "INFO"


@dataclass
class Row:
    check: str
    status: str  # PASS | FAIL | SKIP | INFO
    summary: str  # one line: what was measured against what
    values: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in (PASS, FAIL, SKIP, INFO):
            raise ValueError(f"unknown status {self.status!r}")


def within(name: str, measured: float, reference: float, *, atol: float = 0.0, rtol: float = 0.0) -> Row:
    """PASS when |measured - reference| <= atol + rtol * |reference| (NaN or inf always fails)."""
    diff = abs(measured - reference)
    bound = atol + rtol * abs(reference)
    ok = math.isfinite(measured) and math.isfinite(reference) and diff <= bound
    tol = " + ".join(t for t in (f"{atol:g}" if atol else "", f"{rtol:g}*|ref|" if rtol else "") if t) or "0"
    return Row(
        name,
        PASS if ok else FAIL,
        f"|diff| {diff:.3g} {'<=' if ok else '>'} {tol} (= {bound:.3g})",
        {"measured": measured, "reference": reference, "abs_diff": diff, "bound": bound},
    )


def table(rows: list[Row]) -> str:
    width = max([len(r.check) for r in rows] + [5])
    lines = [f"{'check':<{width}}  status  result", f"{'-' * width}  ------  {'-' * 60}"]
    lines += [f"{r.check:<{width}}  {r.status:<6}  {r.summary}" for r in rows]
    failed = [r.check for r in rows if r.status == FAIL]
    lines.append(f"{len(rows)} checks, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return "\n".join(lines)


def exit_code(rows: list[Row]) -> int:
    return 1 if any(r.status == FAIL for r in rows) else 0


def to_json(rows: list[Row], meta: dict[str, Any]) -> str:
    def clean(v: Any) -> Any:  # NaN/inf are not JSON
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    doc = {"meta": meta, "ok": exit_code(rows) == 0, "checks": [clean(asdict(r)) for r in rows]}
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def write_json(path: str | Path, rows: list[Row], meta: dict[str, Any]) -> None:
    write_text(path, to_json(rows, meta))  # temp name + rename: a killed job never leaves half a report
