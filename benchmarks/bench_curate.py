"""Curation benchmark: stage-2 (pylint) throughput on the bench corpus's code, cptkit's sandboxed batch worker
(in its three `astroid_state` modes: fresh = the default, cleared, shared) next to pylint run the way the public
SwallowCode implementation runs it (one `pylint` process per file), in one run, on the same files, one core each.

    python -m benchmarks curate                      # 64 files spread over the corpus (about 5-10 minutes)
    python -m benchmarks curate --files=0            # all 726 files of code.jsonl.gz
    python -m benchmarks curate --files=16 --corpus=/work/shared/bench/corpus/code.jsonl.gz

Both sides rate the files sequentially (one process at a time), so "files/s per core" is files / wall seconds; the
CPU seconds of the child processes (user + sys, from getrusage) are shown too, as they are less sensitive to
other load on a shared machine. The scores of both sides are compared file by file: a speed-up that changed a
score would not be one.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_CORPUS = Path(os.environ.get("CPTKIT_BENCH_CORPUS", "/work/shared/bench/corpus")) / "code.jsonl.gz"


def load_files(path: Path, n: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    if n <= 0 or n >= len(texts):
        return texts
    step = len(texts) / n
    return [texts[int(i * step)] for i in range(n)]  # spread over the corpus: small and large modules alike


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def public_way(codes: list[str]) -> tuple[list[float | None], float, float]:
    """One `pylint` process per file on a temporary file, as the public filtering.py does."""
    from cptkit.curate.checks import PYLINT_DISABLED

    pylint = str(Path(sys.executable).with_name("pylint"))
    scores: list[float | None] = []
    cpu0, t0 = children_cpu(), time.perf_counter()
    for code in codes:
        with tempfile.NamedTemporaryFile(suffix=".py", delete=False) as f:
            f.write(code.encode())
        try:
            out = subprocess.run(
                [pylint, "--persistent=n", f"--disable={','.join(PYLINT_DISABLED)}", f.name],
                capture_output=True,
                text=True,
            ).stdout
        finally:
            os.unlink(f.name)
        m = re.findall(r"Your code has been rated at (-?[0-9.]+)/10", out)
        scores.append(float(m[-1]) if m else None)
    return scores, time.perf_counter() - t0, children_cpu() - cpu0


def cptkit_way(codes: list[str], batch: int, state: str) -> tuple[list[float | None], float, float]:
    from cptkit.curate.sandbox import PylintSandbox

    sandbox = PylintSandbox(timeout_s=600, astroid_state=state)
    scores: list[float | None] = []
    cpu0, t0 = children_cpu(), time.perf_counter()
    for i in range(0, len(codes), batch):
        scores += [r.score for r in sandbox.rate(codes[i : i + batch])]
    return scores, time.perf_counter() - t0, children_cpu() - cpu0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks curate")
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    p.add_argument("--files", type=int, default=64, help="files to rate (0: all)")
    p.add_argument("--batch", type=int, default=64, help="files per sandboxed pylint process (the pipeline default)")
    args = p.parse_args(argv)
    if not args.corpus.exists():
        print(f"bench curate: corpus not found: {args.corpus} (set CPTKIT_BENCH_CORPUS)", file=sys.stderr)
        return 2
    from importlib.metadata import version

    codes = load_files(args.corpus, args.files)
    print(
        f"stage 2 (pylint {version('pylint')}) on {len(codes)} files of {args.corpus}, {sum(map(len, codes)) / 1e6:.2f} MB",
        flush=True,
    )
    # Interleaved in slices, so that a change of load on a shared machine hits every method alike.
    states = ("fresh", "cleared", "shared")  # the pipeline's default first; see cptkit.curate.pylint_worker
    names = ["public: one pylint process per file"] + [f"cptkit: {args.batch} files/worker, {s}" for s in states]
    runs = [public_way] + [lambda c, s=s: cptkit_way(c, args.batch, s) for s in states]
    totals = [[[], 0.0, 0.0] for _ in runs]
    slice_len = max(args.batch, 1)
    for i in range(0, len(codes), slice_len):
        for total, fn in zip(totals, runs, strict=True):
            scores, wall, cpu = fn(codes[i : i + slice_len])
            total[0] += scores
            total[1] += wall
            total[2] += cpu
    n = len(codes)
    print(f"{'method':46} {'wall s':>8} {'files/s/core':>12} {'CPU s':>8} {'files/CPU-s':>11} {'same scores':>11}")
    for name, (scores, wall, cpu) in zip(names, totals, strict=True):
        same = sum(a == b for a, b in zip(scores, totals[0][0], strict=True))
        print(f"{name:46} {wall:8.1f} {n / wall:12.3f} {cpu:8.1f} {n / cpu:11.3f} {same:>5}/{n:<5}")
    base_wall, base_cpu = totals[0][1], totals[0][2]
    for name, (_, wall, cpu) in zip(names[1:], totals[1:], strict=True):
        print(f"speed-up of {name}: {base_wall / wall:.2f}x wall, {base_cpu / cpu:.2f}x CPU")
    # `shared` is allowed to differ (it is documented as not exact); the default and `cleared` are not.
    identical = all(t[0] == totals[0][0] for t in totals[:3])
    print("scores of fresh and cleared identical to the public way: " + ("yes" if identical else "NO"))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
