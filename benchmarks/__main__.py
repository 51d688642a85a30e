"""Run the benchmarks: `python -m benchmarks` runs every `benchmarks/bench_*.py`; `python -m benchmarks tokenize`
runs only `bench_tokenize.py`. Each benchmark prints its own table of figures measured side by side in one run.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(m.name[len("bench_") :] for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    wanted = [a for a in argv if not a.startswith("-")] or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        print(f"benchmarks: unknown benchmark(s) {unknown}; available: {names}", file=sys.stderr)
        return 2
    rc = 0
    for name in wanted:
        print(f"\n=== benchmark: {name} ===", flush=True)
        module = importlib.import_module(f"benchmarks.bench_{name}")
        rc |= int(module.main([a for a in argv if a.startswith("-")]) or 0)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
