"""HumanEval+ scored by evalplus's own evaluation code: base tests (HumanEval's inputs) and plus tests (EvalPlus's).

What runs is evalplus's (the PyPI package, pinned as EVALPLUS_VERSION): `evalplus.evaluate.get_groundtruth` runs the
canonical solution on every input to get the expected outputs and the reference time of each test;
`evalplus.evaluate.check_correctness` runs a completion on the base and on the plus inputs through
`evalplus.eval.untrusted_check` (a child process, its `reliability_guard` with a 4 GiB memory limit, a time limit per
test of max(1 s, 4 x the canonical solution's time), stop at the first failing test as `evaluate` does by default);
pass@k is `evalplus.eval.estimate_pass_at_k`, averaged over problems. A completion counts for HumanEval+ only when
both its base and its plus status are "pass" (evalplus's rule), and for the base column when its base status is.
The program is the problem's prompt followed by the completion, as evalplus builds it from a `completion` sample.

What cptkit adds is the glue evalplus's `evaluate` has around those functions, per problem instead of per file, so
each lm-eval document is scored as it comes: the problem record comes from the document (its `evalplus` field is the
release file's line, verbatim: `fetch-data` keeps it as text because the test inputs mix types that Arrow cannot hold),
ground truth is cached in evalplus's own cache directory (`~/.cache/evalplus`, `$XDG_CACHE_HOME` moves it) under a
hash of the record, as evalplus caches a whole file's. The parity test (tests/eval/test_humaneval_plus.py) shows this
gives the statuses and pass@1 that `evalplus.evaluate` itself gives on the same completions.

Installation: evalplus is installed with `--no-deps` (its requirements pull API clients, model runners and a protobuf
change); what its evaluation path imports (wget, tempdir, appdirs, tree-sitter, tree-sitter-python, rich, termcolor)
is in cptkit's `eval` extra. This executes model-written code: run it inside the job's container.

Try it on a CPU machine:  python -c "from cptkit.eval.humaneval_plus import self_check; self_check(); print('ok')"
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from functools import cache

EVALPLUS_VERSION = "0.3.1"
MAX_WORKERS = 8


def problem(doc: dict) -> dict:
    """The HumanEvalPlus record of an lm-eval document (see the module docstring)."""
    return json.loads(doc["evalplus"])


def _record_hash(record: dict) -> str:
    return "cptkit-" + hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:32]


@cache
def _expected(record_json: str) -> dict:
    from evalplus.evaluate import get_groundtruth

    record = json.loads(record_json)
    with contextlib.redirect_stdout(io.StringIO()):  # two progress lines per problem
        return get_groundtruth({record["task_id"]: record}, _record_hash(record), [])[record["task_id"]]


def expected_output(record: dict) -> dict:
    """evalplus's ground truth for one problem: outputs and reference times on the base and plus inputs."""
    return _expected(json.dumps(record, sort_keys=True))


def check(record: dict, expected: dict, completion: str) -> tuple[str, str]:
    """(base status, plus status) of one completion, each "pass" | "fail" | "timeout", from evalplus's checker."""
    from evalplus.config import DEFAULT_GT_TIME_LIMIT_FACTOR, DEFAULT_MIN_TIME_LIMIT
    from evalplus.evaluate import check_correctness

    result = check_correctness(
        "humaneval",
        0,
        record,
        record["prompt"] + completion,
        expected,
        base_only=False,
        fast_check=True,  # evalplus `evaluate`'s default (no --test-details): stop at the first failing test
        min_time_limit=DEFAULT_MIN_TIME_LIMIT,
        gt_time_limit_factor=DEFAULT_GT_TIME_LIMIT_FACTOR,
    )
    return result["base"][0], result["plus"][0]


@cache
def _pool() -> ProcessPoolExecutor:
    """One pool per process, kept for every problem: its workers import evalplus (and `datasets` through it) once,
    not once per problem. A fork server, as in cptkit.eval.code and for the same reason: each check forks, and
    forking a multi-threaded lm-eval process is unsafe; the workers are single-threaded and fork from there."""
    workers = max(1, min(MAX_WORKERS, os.cpu_count() or 1))
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, "evalplus.evaluate"])  # imported once (if the server starts here)
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


def statuses(record: dict, completions: list[str]) -> list[tuple[str, str]]:
    """Check every completion (several at once in the pool)."""
    expected = expected_output(record)
    if len(completions) == 1:
        return [check(record, expected, completions[0])]
    n = len(completions)
    return list(_pool().map(check, [record] * n, [expected] * n, completions))


def score(record: dict, completions: list[str], ks: tuple[int, ...]) -> dict[str, float]:
    """`pass@k` (HumanEval+: base and plus tests pass) and `base_pass@k` (base tests pass) for k <= n."""
    self_check()
    return pass_at_k(statuses(record, completions), ks)


def pass_at_k(found: list[tuple[str, str]], ks: tuple[int, ...]) -> dict[str, float]:
    """pass@k of one problem from its completions' (base, plus) statuses, by evalplus's estimator and rule."""
    from evalplus.eval import PASS, estimate_pass_at_k

    n = len(found)
    base = sum(b == PASS for b, _ in found)
    plus = sum(b == PASS and p == PASS for b, p in found)
    out = {}
    for k in ks:
        if k <= n:
            out[f"pass@{k}"] = float(estimate_pass_at_k(n, [plus], k)[0])
            out[f"base_pass@{k}"] = float(estimate_pass_at_k(n, [base], k)[0])
    return out


_CANARY = {
    "task_id": "cptkit/canary",
    "prompt": "def is_odd(n):\n",
    "entry_point": "is_odd",
    "canonical_solution": "    return n % 2 == 1\n",
    "contract": "",
    "base_input": [[3], [4]],
    "plus_input": [[-3], [0]],
    "atol": 0,
}


@cache
def self_check() -> None:
    """Refuse to score unless evalplus's checker passes a right completion and fails, on the plus tests only, one
    that is right on the base tests alone (a checker that ran nothing, or only one test set, would not)."""
    import evalplus

    if evalplus.__version__ != EVALPLUS_VERSION:
        raise RuntimeError(f"evalplus {evalplus.__version__} is installed; cptkit's HumanEval+ pins {EVALPLUS_VERSION}")
    expected = expected_output(_CANARY)
    good = check(_CANARY, expected, "    return n % 2 == 1\n")
    base_only = check(_CANARY, expected, "    return n % 2 == 1 and n > 0\n")  # wrong for -3 (-3 % 2 == 1)
    if good != ("pass", "pass") or base_only != ("pass", "fail"):
        raise RuntimeError(
            f"evalplus's checker is not executing programs correctly (right -> {good}, right on the base tests only "
            f"-> {base_only}); refusing to report HumanEval+ scores"
        )


def _completions(results: list) -> list[str]:
    return list(results[0] if isinstance(results[0], list) else results)


def process_results(doc: dict, results: list) -> dict[str, float]:
    """lm-eval hook for greedy decoding (repeats: 1): pass@1 and base_pass@1."""
    return score(problem(doc), _completions(results), ks=(1,))


def process_results_sampled(doc: dict, results: list) -> dict[str, float]:
    """lm-eval hook for sampling (repeats: n): pass@1 and pass@10, HumanEval+ and base, estimated from n samples."""
    return score(problem(doc), _completions(results), ks=(1, 10))
