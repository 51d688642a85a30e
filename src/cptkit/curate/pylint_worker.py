"""Sandboxed pylint worker: rates a batch of files in one process, one JSON line per file on stdout.

Started by `cptkit.curate.sandbox.PylintSandbox`, never by hand in a pipeline; to try it:
    echo '["import os\\nprint(os.sep)\\n"]' > /tmp/batch.json
    python -m cptkit.curate.pylint_worker /tmp/batch.json [--astroid-state fresh|cleared|shared]

Each file is written to its own temporary `.py` file and rated by pylint with the public pipeline's arguments
(`--persistent=n` and the disabled messages), so the score parsed from pylint's report is the one the public
one-process-per-file invocation gets. What the batch saves is the interpreter start and the pylint/astroid import.
astroid keeps state between files (parsed library modules, and what inference recorded on them: a file that
sets `os.foo = 1` changes `os` for the next file), so how each file starts is a choice:

- `fresh` (default): the worker imports pylint once, then forks a child per file; every file starts from the same
  pristine state a new `pylint` process has. Same scores as one process per file.
- `cleared`: astroid's caches are cleared after every file, in one process. Same scores, little saved (the
  builtins module is rebuilt every time).
- `shared`: nothing is cleared: the fastest, but a file can see what an earlier file's inference left behind; the
  benchmark found one score in 32 that differed from the public way. Not for reproducing the paper.

Before each file a `{"start": i}` line is printed, so the parent knows which file a timeout or a crash hit.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile

STATES = ("fresh", "cleared", "shared")


def _rate(path: str) -> dict:
    from pylint.lint import Run
    from pylint.reporters.text import TextReporter

    from cptkit.curate.checks import PYLINT_DISABLED, parse_pylint_score

    buf = io.StringIO()
    try:
        Run(["--persistent=n", f"--disable={','.join(PYLINT_DISABLED)}", path], reporter=TextReporter(buf), exit=False)
        return {"score": parse_pylint_score(buf.getvalue()), "status": "ok"}
    except MemoryError:
        return {"score": None, "status": "memory"}
    except Exception as e:  # pylint crashed on this file: the file is dropped, the batch goes on
        return {"score": None, "status": f"crash: {type(e).__name__}"}


def _rate_in_child(path: str) -> dict:
    """Fork; the child rates `path` and reports through a pipe; its astroid state dies with it."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        from cptkit.curate.sandbox import _die_with_parent

        _die_with_parent()  # a worker killed by its pipeline takes this file's pylint with it
        os.close(read_fd)
        try:
            payload = json.dumps(_rate(path)).encode()
        except BaseException:
            payload = b'{"score": null, "status": "crash: child"}'
        with os.fdopen(write_fd, "wb") as w:
            w.write(payload)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as r:
        payload = r.read()
    os.waitpid(pid, 0)
    if not payload:  # killed (memory limit, signal) before it could answer
        return {"score": None, "status": "crashed"}
    return json.loads(payload)


def main(argv: list[str]) -> int:
    from astroid import MANAGER
    from pylint.lint import Run  # noqa: F401 - imported once here, before any fork

    state = argv[argv.index("--astroid-state") + 1] if "--astroid-state" in argv else "fresh"
    if state not in STATES:
        raise SystemExit(f"--astroid-state must be one of {STATES}")
    with open(argv[0], encoding="utf-8") as f:
        codes = json.load(f)
    out = sys.stdout
    with tempfile.TemporaryDirectory(prefix="cptkit-pylint-") as tmp:
        for i, code in enumerate(codes):
            out.write(json.dumps({"start": i}) + "\n")
            out.flush()
            path = os.path.join(tmp, f"tmp{i:06d}.py")
            with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
                f.write(code)
            try:
                result = _rate_in_child(path) if state == "fresh" else _rate(path)
            finally:
                os.unlink(path)
                if state == "cleared":
                    MANAGER.clear_cache()
            out.write(json.dumps({"i": i, **result}) + "\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
