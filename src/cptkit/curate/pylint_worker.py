"""Sandboxed pylint worker: rates a batch of files in one process, one JSON line per file on stdout.

Started by `cptkit.curate.sandbox.PylintSandbox`, never by hand in a pipeline; to try it:
    echo '["import os\\nprint(os.sep)\\n"]' > /tmp/batch.json
    python -m cptkit.curate.pylint_worker /tmp/batch.json [--keep-astroid-cache]

Each file is written to its own temporary `.py` file and rated by pylint in this process with the public
pipeline's arguments (`--persistent=n` and the disabled messages), so the output, and the score parsed from it,
is what the public one-process-per-file invocation prints. What one process per batch saves is the interpreter
start and the pylint/astroid import, and, with `--keep-astroid-cache`, astroid's parse of the standard-library and
third-party modules the files import (each file gets a new module name, so nothing of one file is cached for the
next; the benchmark and tests/curate/test_pylint.py check the scores equal the one-process-per-file ones). Without
the flag the cache is cleared after every file.

Before each file a `{"start": i}` line is printed, so the parent knows which file a timeout or a crash hit.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile


def main(argv: list[str]) -> int:
    from astroid import MANAGER
    from pylint.lint import Run
    from pylint.reporters.text import TextReporter

    from cptkit.curate.checks import PYLINT_DISABLED, parse_pylint_score

    keep_cache = "--keep-astroid-cache" in argv[1:]
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
            buf = io.StringIO()
            try:
                Run(
                    ["--persistent=n", f"--disable={','.join(PYLINT_DISABLED)}", path],
                    reporter=TextReporter(buf),
                    exit=False,
                )
                result = {"i": i, "score": parse_pylint_score(buf.getvalue()), "status": "ok"}
            except MemoryError:
                result = {"i": i, "score": None, "status": "memory"}
            except Exception as e:  # pylint crashed on this file: the file is dropped, the batch goes on
                result = {"i": i, "score": None, "status": f"crash: {type(e).__name__}"}
            finally:
                os.unlink(path)
                if not keep_cache:
                    MANAGER.clear_cache()
            out.write(json.dumps(result) + "\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
