"""Make the reference fixtures of tests/curate from the public SwallowCode implementation (run once, by hand).

    git clone https://github.com/rioyokotalab/swallow-code-math /tmp/scm   # the snapshot read: 45acafb
    PATH=.venv/bin:$PATH .venv/bin/python tests/curate/data/make_reference.py /tmp/scm

It writes, and nothing of the public code is committed:
- src/cptkit/curate/prompts/*.txt: the published prompt strings, taken from the public scripts' string constants
  (read with `ast`, never executed), byte for byte;
- tests/curate/data/reference_prompts.json: their sha256, so a test notices any edit;
- tests/curate/data/reference_filtering.json: what the public `filtering.py` functions (imported from the clone)
  say about every file of handmade_cases.json: compile issues, pylint score after the comment penalty (pylint run
  the public way, one process per file, with the pylint on PATH), comment-language label. The pylint version is
  recorded with it.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROMPTS = HERE.parents[2] / "src" / "cptkit" / "curate" / "prompts"

# (public file, constant) -> our prompt file
PROMPT_SOURCES = {
    "sgcr_system.txt": ("src/code/pretrain_dataset/sgcr_python.py", "instruction"),
    "scor_system.txt": ("src/code/pretrain_dataset/scor_python.py", "SYSTEM_PROMPT"),
    "math_system.txt": ("src/math/finemath-4+-rewrite-v1.py", "SYSTEM_PROMPT"),
    "math_example_input.txt": ("src/math/finemath-4+-rewrite-v1.py", "INPUT_PROMPT"),
    "math_example_output.txt": ("src/math/finemath-4+-rewrite-v1.py", "OUTPUT_PROMPT"),
}


def string_constant(path: Path, name: str) -> str:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit(f"{path}: no string constant {name}")


def main(repo: Path) -> None:
    digests = {}
    for ours, (rel, name) in PROMPT_SOURCES.items():
        text = string_constant(repo / rel, name)
        (PROMPTS / ours).write_bytes(text.encode("utf-8"))
        digests[ours] = {"source": f"{rel}:{name}", "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    (HERE / "reference_prompts.json").write_text(
        json.dumps({"commit": commit.strip(), "prompts": digests}, indent=2) + "\n"
    )

    spec = importlib.util.spec_from_file_location("public_filtering", repo / "src/code/pretrain_dataset/filtering.py")
    public = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(public)
    cases = json.loads((HERE / "handmade_cases.json").read_text(encoding="utf-8"))
    out = {}
    for name, case in cases.items():
        if case.get("reference", True) is False:  # e.g. the pylint-hang file: the public tool would hang too
            continue
        code = case["code"]
        score, _ = public.check_code_quality(code)
        _, lang = public.check_language_issues(code)
        out[name] = {"syntax_issues": public.check_syntax_error(code), "pylint_score": score, "language_type": lang}
    version = subprocess.run(["pylint", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    ref = {"commit": commit.strip(), "pylint": version, "python": sys.version.split()[0], "cases": out}
    (HERE / "reference_filtering.json").write_text(json.dumps(ref, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
