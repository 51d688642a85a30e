"""`cptkit report` against the seed tables themselves: the published numbers cptkit ships are the seed files' numbers,
and each shipped suite's table has the seed table's columns, order, average columns and decimals.

The seed files (shared/seeds 000, 001, 003, 004: two model cards, a tech report, a model card) are copied verbatim to
tests/eval/fixtures/seeds/ and parsed here, so a typo in reference_scores.yaml or a reordered suite fails a test.

CPU, ~5 s:  pytest tests/eval/test_report_seeds.py -q
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
from pathlib import Path

import pytest
import yaml

from cptkit.eval import report, report_table
from cptkit.eval.suites import load_suite

SEEDS = Path(__file__).parent / "fixtures" / "seeds"
SEED_003_NAMES = {"HellaSWAG": "HellaSwag"}  # the only header the report spells differently (as seeds 000/001 do)


# ---- the seed files' tables -----------------------------------------------------------------------------------------


def _num(cell: str) -> float | None:
    return float(cell) if re.fullmatch(r"\d+\.\d+", cell.strip()) else None


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def seed_000() -> tuple[list[str], dict[str, list[str]]]:
    """Seed 000's pipe table: header 'Tokens (B) | OpenBookQA | ...', rows '10 | 0.3640 | ...'."""
    lines = (SEEDS / "000.txt").read_text(encoding="utf-8").splitlines()
    header = next(_cells(x) for x in lines if x.startswith("Tokens (B) |"))
    rows = {c[0]: c[1:] for c in map(_cells, lines) if re.fullmatch(r"\d+", c[0]) and len(c) == len(header)}
    return header[1:], rows


def seed_001() -> tuple[list[str], dict[str, list[str]]]:
    """Seed 001's whitespace-separated table: 'Tokens (B) OpenBookQA ...', rows '10 0.3700 ...'."""
    lines = (SEEDS / "001.txt").read_text(encoding="utf-8").splitlines()
    header = next(x.split()[2:] for x in lines if x.startswith("Tokens (B) "))
    rows = {x.split()[0]: x.split()[1:] for x in lines if re.fullmatch(r"\d+( \d\.\d+)+", x.strip())}
    return header, rows


def seed_003(first_column: str) -> tuple[list[str], dict[str, list[str]]]:
    """One of seed 003's tables ('Model | JCom. | ...' or 'Model | OpenBookQA | ...'); its model rows."""
    lines = (SEEDS / "003.txt").read_text(encoding="utf-8").splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith(f"Model | {first_column} |"))
    header = _cells(lines[start])[1:]
    rows = {}
    for line in lines[start + 1 :]:
        if "|" not in line:
            break
        cells = _cells(line)
        if len(cells) == len(header) + 1 and all(_num(c) is not None for c in cells[1:]):
            rows[cells[0]] = cells[1:]
    return header, rows


def seed_004() -> dict[str, tuple[list[str], dict[str, list[str]]]]:
    """Seed 004's Markdown tables, flattened onto one line in the file: section title -> (header, rows by model)."""
    text = (SEEDS / "004.txt").read_text(encoding="utf-8")
    out = {}
    for section in text.split("### ")[1:]:
        title = section[: section.index("- ")].strip() if "- " in section else section.split()[0]
        if "|" not in section:
            continue
        table = section[section.index("|") : section.rindex("|") + 1]
        lines = [_cells(r) for r in re.split(r"\|\s+\|", table)]
        header = lines[0]
        rows = {f"{c[0]}\t{c[1]}": c[2:] for c in lines[1:] if len(c) == len(header) and not c[0].startswith("-")}
        out[title] = (header[2:], rows)
    return out


def _fim(header: str) -> str:
    mode, lang = re.fullmatch(r"(PSM|SPM) \((\w+)\)", header).groups()
    return f"FIM-{mode}-{lang}"


def _model_004(key: str) -> str:
    model, size = key.split("\t")
    model = re.sub(r"\s*\*$", "", model)
    model = model.removesuffix(f" {size}")  # "Llama 3.1 8B *" (FIM table) is "Llama 3.1" at 8B
    return f"{model} ({size})"


def published_from_seeds() -> dict[str, dict[str, dict]]:
    """What reference_scores.yaml must hold: suite -> row name -> {scores, average?, tokens?}, from the seed files."""
    out: dict[str, dict[str, dict]] = {}
    for suite, (header, rows) in (("swallowcode", seed_000()), ("swallowmath", seed_001())):
        out[suite] = {
            f"exp1 {t}B": {"tokens": int(t) * 10**9, "scores": {h: _num(v) for h, v in zip(header, r, strict=True)}}
            for t, r in rows.items()
        }
    for suite, first, avg in (("swallow_v05_ja", "JCom.", "Ja Avg"), ("swallow_v05_en", "OpenBookQA", "En Avg")):
        header, rows = seed_003(first)
        out[suite] = {}
        for name, cells in rows.items():
            values = {SEED_003_NAMES.get(h, h): _num(v) for h, v in zip(header, cells, strict=True)}
            out[suite][name] = {"average": values.pop(avg), "scores": values}
    code = {}
    for title, prefix in (
        ("Code completion (Japanese)", "JMultiPL-E-"),
        ("Code completion (English)", "MultiPL-E-"),
        ("Fill-in-the-Middle", None),
    ):
        header, rows = seed_004()[title]
        for key, cells in rows.items():
            scores = code.setdefault(_model_004(key), {"scores": {}})["scores"]
            for h, v in zip(header, cells, strict=True):
                if _num(v) is not None:
                    scores[f"{prefix}{h}" if prefix else _fim(h)] = _num(v)
    out["future_code_ja"] = code
    return out


def mismatches(published: dict, expected: dict) -> list[str]:
    """Every difference between reference_scores.yaml (as loaded) and the numbers parsed from the seeds."""
    found = []
    for suite, rows in expected.items():
        shipped = {r["name"]: r for r in published.get(suite, {}).get("rows", [])}
        if list(shipped) != list(rows):
            found.append(f"{suite}: rows {list(shipped)} != seed rows {list(rows)}")
        for name, want in rows.items():
            got = shipped.get(name, {})
            for key in ("scores", "average", "tokens"):
                if got.get(key) != want.get(key):
                    found.append(f"{suite}/{name}/{key}: {got.get(key)} != seed {want.get(key)}")
    return found


def _shipped() -> dict:
    text = (importlib.resources.files("cptkit.eval") / "reference_scores.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


# ---- the tests ------------------------------------------------------------------------------------------------------


def test_the_seed_parsers_see_every_table():
    assert len(seed_000()[1]) == 5 and len(seed_001()[1]) == 5  # 10B .. 50B
    assert len(seed_003("JCom.")[1]) == 5 and len(seed_003("OpenBookQA")[1]) == 5
    tables = seed_004()
    assert [len(tables[t][1]) for t in ("Code completion (Japanese)", "Code completion (English)")] == [7, 7]
    assert len(tables["Fill-in-the-Middle"][1]) == 4


def test_published_rows_are_the_seed_files_numbers():
    expected = published_from_seeds()
    assert mismatches(_shipped(), expected) == []
    assert _shipped()["ja"] == {"same_as": "swallow_v05_ja"} and _shipped()["en"] == {"same_as": "swallow_v05_en"}


def test_a_typo_in_the_published_rows_fails_the_check():
    expected = published_from_seeds()
    typo = copy.deepcopy(_shipped())
    typo["swallowcode"]["rows"][2]["scores"]["GSM8K"] = 0.5027  # 30B's 0.5072 with two digits swapped
    assert mismatches(typo, expected) == ["swallowcode/exp1 30B/scores: " + _diff(typo, "swallowcode", 2, expected)]
    typo = copy.deepcopy(_shipped())
    typo["swallow_v05_ja"]["rows"][4]["average"] = 0.534
    assert len(mismatches(typo, expected)) == 1
    typo = copy.deepcopy(_shipped())
    del typo["future_code_ja"]["rows"][2]["scores"]["MultiPL-E-ts"]
    assert len(mismatches(typo, expected)) == 1


def _diff(published: dict, suite: str, i: int, expected: dict) -> str:
    row = published[suite]["rows"][i]
    return f"{row['scores']} != seed {expected[suite][row['name']]['scores']}"


def _decimals(cells: list[str]) -> set[int]:
    return {len(c.split(".")[1]) for c in cells if _num(c) is not None}


def _report_header(suite: str) -> list[list[str]]:
    """The benchmark and average headers of each table `cptkit report` writes for a shipped suite."""
    layout = load_suite(suite).report
    columns = [t.column for t in load_suite(suite).tasks]
    return [
        [*t.columns, *(n for n, _ in report_table.averages_in(layout, t, columns))]
        for t in report_table.tables_of(layout, columns)
    ]


@pytest.mark.parametrize(
    ("suites", "seed"),
    [
        (("swallowcode",), lambda: [seed_000()]),
        (("swallowmath",), lambda: [seed_001()]),
        (("swallow_v05_ja", "ja"), lambda: [seed_003("JCom.")]),
        (("swallow_v05_en", "en"), lambda: [seed_003("OpenBookQA")]),
    ],
)
def test_suite_tables_have_the_seed_tables_columns_and_decimals(suites, seed):
    tables = seed()
    want = [[SEED_003_NAMES.get(h, h) for h in header] for header, _ in tables]
    decimals = set().union(*(_decimals([c for r in rows.values() for c in r]) for _, rows in tables))
    for suite in suites:
        assert _report_header(suite) == want, suite
        assert {load_suite(suite).report.decimals} == decimals, suite


def test_future_code_ja_has_the_cards_three_code_tables():
    tables = seed_004()
    titles = ["Code completion (Japanese)", "Code completion (English)", "Fill-in-the-Middle"]
    want = [
        [f"JMultiPL-E-{h}" for h in tables[titles[0]][0]],
        [f"MultiPL-E-{h}" for h in tables[titles[1]][0]],
        [_fim(h) for h in tables[titles[2]][0]],
    ]
    assert _report_header("future_code_ja") == want  # no average column: the card prints none
    assert [t.title.split(":")[0] for t in load_suite("future_code_ja").report.tables] == titles
    cells = [c for t in titles for r in tables[t][1].values() for c in r]
    assert _decimals(cells) == {load_suite("future_code_ja").report.decimals} == {4}


def _write(run: Path, suite: str, it: int, tokens: int, scores: dict, not_comparable: dict | None = None) -> None:
    doc = {"suite": suite, "model": {"iteration": it, "consumed_tokens": tokens}, "scores": scores}
    doc["not_comparable"] = not_comparable or {}
    out = run / "eval" / f"iter_{it:07d}" / f"{suite}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc))


def test_v05_ja_report_reads_like_the_seed_table(tmp_path):
    columns = [t.column for t in load_suite("swallow_v05_ja").tasks]
    scores = {c: 0.5 + i / 100 for i, c in enumerate(columns)}
    _write(tmp_path / "exp", "swallow_v05_ja", 1200, 5_033_164_800, scores, {"XL-Sum": ["JP harness prompt v0.0"]})
    md = report.markdown_table([report.load_run(tmp_path / "exp", "exp")], "swallow_v05_ja", reference=True)
    header = (
        "| Run | Iteration | Tokens | JCom. | JEMHopQA | NIILC | JSQuAD | XL-Sum | MGSM | WMT20-en-ja | WMT20-ja-en"
    )
    assert header + " | JMMLU | JHumanEval | Ja Avg |" in md
    assert "| exp | 1200 | 5.033B | 0.500 | 0.510 | 0.520 | 0.530 | 0.540 [1] | 0.550 |" in md
    assert "| 0.580 | 0.590 | 0.545 [2] |" in md  # 3 decimals; the average includes a not comparable column
    assert "[1] not comparable with the seed's table: JP harness prompt v0.0" in md
    assert "| Llama 3.1 Swallow 8B v0.5 (published) | – | – | 0.952 | 0.513 |" in md and "| 0.491 | 0.543 |" in md
    assert "| | | | 4-shot EM acc | 4-shot Char-F1 |" in md  # the seed's shots/metric row


def test_seed_000_and_004_reports_have_no_average_column(tmp_path):
    _write(tmp_path / "a", "swallowcode", 10, 10**10, {"OpenBookQA": 0.36, "HumanEval": 0.3366})
    md = report.markdown_table([report.load_run(tmp_path / "a", "a")], "swallowcode")
    assert "| HumanEval | HumanEval+ |\n" in md and "Avg" not in md
    assert "| a | 10 | 10B | 0.3600 | – |" in md  # 4 decimals; a column not evaluated is "–"
    _write(tmp_path / "b", "future_code_ja", 10, 10**10, {"JMultiPL-E-py": 0.6335, "FIM-SPM-java": 0.5})
    md = report.markdown_table([report.load_run(tmp_path / "b", "b")], "future_code_ja", reference=True)
    sections = md.split("### ")[1:]
    assert [s.split(":")[0] for s in sections] == [
        "Code completion (Japanese)",
        "Code completion (English)",
        "Fill-in-the-Middle",
    ]
    assert "| b | 10 | 10B | 0.6335 | – |" in sections[0] and "| 0.5000 |" in sections[2]
    assert "| Llama 3.1 (70B) (published) | – | – | – | 0.5964 | – | 0.5084 | – | 0.2910 |" in sections[2]


def test_the_code_suites_average_is_its_pass_at_1_columns(tmp_path):
    layout = load_suite("code").report
    (avg,) = layout.averages
    assert avg.name == "code avg" and "HumanEval@10" not in avg.columns and "HumanEval-greedy" not in avg.columns
    assert len(avg.columns) == 18


def test_plots_have_no_offset_text(tmp_path):
    """Scores that differ in the 4th decimal make matplotlib's default formatter print "+0.3" in a corner; ours not."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.ticker import ScalarFormatter

    for it, value in ((1, 0.30001), (2, 0.30004), (3, 0.30009)):
        _write(tmp_path / "r", "mini", it, it * 10**12 + 7, {"MMLU": value})
    runs = [report.load_run(tmp_path / "r", "r")]
    fig = report.plot_benchmark(runs, "mini", "MMLU")
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    assert ax.yaxis.get_offset_text().get_text() == "" and ax.xaxis.get_offset_text().get_text() == ""
    assert any(t.get_text().startswith("0.3000") for t in ax.get_yticklabels())
    assert ax.get_ylabel() == "MMLU: score" and ax.get_xlabel() == "tokens trained (T)"
    # not blind: the default formatter on the same data does show an offset
    ax.yaxis.set_major_formatter(ScalarFormatter())
    fig.canvas.draw()
    assert ax.yaxis.get_offset_text().get_text() != ""


def test_average_plot_names_its_columns(tmp_path):
    columns = [t.column for t in load_suite("swallow_v05_en").tasks]
    _write(tmp_path / "r", "swallow_v05_en", 1, 10**9, dict.fromkeys(columns, 0.5))
    ax = report.plot_benchmark([report.load_run(tmp_path / "r", "r")], "swallow_v05_en", "En Avg").axes[0]
    assert ax.get_ylabel() == "En Avg: mean of 10 columns" and list(ax.lines[0].get_ydata()) == [0.5]
    ax = report.plot_benchmark([report.load_run(tmp_path / "r", "r")], "swallow_v05_en", "SQuAD2.0").axes[0]
    assert ax.get_ylabel() == "SQuAD2.0: 4-shot EM acc (best_exact)"


def test_report_layout_errors_name_the_field(tmp_path):
    from cptkit.errors import UserError

    base = "name: s\ntasks:\n  - {column: A, template: openbookqa, shots: 0, metric: 'acc,none'}\n"
    for report_yaml, field in (
        ("report: {averages: [{name: X, columns: [B]}]}", "report.averages[0].columns: 'B' is not a column"),
        ("report: {tables: [{title: t, columns: [A, C]}]}", "report.tables[0].columns: 'C' is not a column"),
        ("report: {averages: [{name: A}]}", "report.averages: A is also a benchmark column"),
        ("report: {decimals: 12}", "report.decimals"),
    ):
        path = tmp_path / "s.yaml"
        path.write_text(base + report_yaml + "\n")
        with pytest.raises(UserError, match=re.escape(field)):
            load_suite(str(path))


def test_editing_the_report_layout_does_not_make_results_stale(tmp_path):
    base = "name: s\ntasks:\n  - {column: A, template: openbookqa, shots: 0, metric: 'acc,none'}\n"
    (tmp_path / "a.yaml").write_text(base)
    (tmp_path / "b.yaml").write_text("# a comment\n" + base + "report: {decimals: 3, averages: []}\n")
    (tmp_path / "c.yaml").write_text(base.replace("shots: 0", "shots: 4"))
    sha = {n: load_suite(str(tmp_path / f"{n}.yaml")).sha256 for n in "abc"}
    assert sha["a"] == sha["b"] != sha["c"]


def test_a_custom_suites_layout_comes_from_its_results(tmp_path):
    """A suite given as a path is not loadable by name later: the layout the runner recorded in the results is used."""
    _write(tmp_path / "r", "my_suite", 3, 3 * 10**6, {"A": 0.5, "B": 0.25})
    doc_path = tmp_path / "r" / "eval" / "iter_0000003" / "my_suite.json"
    doc = json.loads(doc_path.read_text())
    doc["report"] = {"decimals": 2, "averages": [{"name": "AB avg", "columns": ["A", "B"]}], "tables": []}
    doc_path.write_text(json.dumps(doc))
    md = report.markdown_table([report.load_run(tmp_path / "r", "r")], "my_suite")
    assert "| Run | Iteration | Tokens | A | B | AB avg |" in md and "| r | 3 | 3M | 0.50 | 0.25 | 0.38 |" in md


def test_a_not_comparable_curve_says_so_in_its_title(tmp_path):
    columns = [t.column for t in load_suite("swallow_v05_ja").tasks]
    _write(tmp_path / "r", "swallow_v05_ja", 1, 10**9, dict.fromkeys(columns, 0.5), {"XL-Sum": ["JP harness v0.0"]})
    runs = [report.load_run(tmp_path / "r", "r")]
    titles = {
        c: report.plot_benchmark(runs, "swallow_v05_ja", c).axes[0].get_title() for c in ("XL-Sum", "MGSM", "Ja Avg")
    }
    assert "not comparable" in titles["XL-Sum"] and "not comparable" in titles["Ja Avg"]
    assert titles["MGSM"] == "swallow_v05_ja: MGSM"
