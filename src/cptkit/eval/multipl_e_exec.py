"""MultiPL-E execution: each language's toolchain, running programs in a sandboxed child, pass/fail by exit code.

The program (`prompt + completion + "\\n" + tests`) is written into a fresh temporary directory and run by the
language's toolchain (`TOOLCHAINS`: `python3`, `bash`, `node`, `g++ -std=c++17` then the binary, `javac` then
`java -ea`, `rustc` then the binary, ...), as MultiPL-E's evaluators do: stdin closed, stdout and stderr captured,
a wall-clock limit (the whole process group is killed), and resource limits set in the child before exec (address
space, CPU seconds, size of files written, no core dumps). It passes when it exits 0, plus MultiPL-E's few
per-language checks. The children are started from the single-threaded workers of a fork-server pool: `preexec_fn`
is unsafe in lm-eval's multi-threaded process. Scoring and the lm-eval glue are in `cptkit.eval.multipl_e`.

Try it on a CPU machine:  python -c "from cptkit.eval.multipl_e_exec import execute, _environment as e; print(execute('py', 'assert 1', e('py')))"
"""

from __future__ import annotations

import contextlib
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
