"""Selftest rows → table, JSON and exit code."""

from __future__ import annotations

import json
import math

from cptkit.selftest.report import FAIL, INFO, PASS, SKIP, Row, exit_code, table, to_json, within, write_json


def test_within_passes_inside_and_fails_outside_the_bound():
    assert within("x", 1.0005, 1.0, rtol=1e-3).status == PASS
    assert within("x", 1.01, 1.0, rtol=1e-3).status == FAIL
    assert within("x", 0.5, 0.0, atol=1.0).status == PASS
    assert within("x", math.nan, 1.0, rtol=1.0).status == FAIL  # NaN never passes
    assert within("x", math.inf, math.inf, rtol=1.0).status == FAIL


def test_table_json_and_exit_code(tmp_path):
    rows = [Row("versions", INFO, "no GPU"), Row("a", PASS, "ok"), Row("b", SKIP, "needs TE")]
    assert exit_code(rows) == 0
    text = table(rows)
    assert "versions" in text and "3 checks, 0 failed" in text
    rows.append(Row("c", FAIL, "bad", {"v": math.nan}))
    assert exit_code(rows) == 1
    assert table(rows).endswith("4 checks, 1 failed: c")
    doc = json.loads(to_json(rows, {"world_size": 2}))
    assert doc["ok"] is False and doc["checks"][3] == {
        "check": "c",
        "status": "FAIL",
        "summary": "bad",
        "values": {"v": "nan"},
    }
    out = tmp_path / "sub" / "st.json"
    write_json(out, rows, {})
    assert json.loads(out.read_text())["meta"] == {} and not list(out.parent.glob("*.tmp*"))


def test_unknown_status_is_a_bug():
    import pytest

    with pytest.raises(ValueError):
        Row("x", "OK", "")
