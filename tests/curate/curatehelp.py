"""Helpers for tests/curate: the hand-made file set, pipeline files, the CLI in-process.

Run on CPU: `.venv/bin/pytest tests/curate -q` (add `-m slow` for the pylint, kill/resume and tiny-model tests).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import subprocess
from pathlib import Path

from cptkit.cli import main

DATA = Path(__file__).parent / "data"

# A file that makes pylint (astroid's inference) run for minutes: one name re-bound in 800 branches, then used.
HANG_CODE = (
    "import random\nx = 1\n"
    + "".join(f"if random.random() > 0.5:\n    x = x + {i}\nelse:\n    x = str(x) * 2\n" for i in range(800))
    + "print(x.upper())\n"
)

# Llama-3 chat format, as in Llama-3.x-Instruct's tokenizer_config.json (without the tool-calling branches).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def cases() -> dict:
    return json.loads((DATA / "handmade_cases.json").read_text(encoding="utf-8"))


def reference() -> dict:
    return json.loads((DATA / "reference_filtering.json").read_text(encoding="utf-8"))


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def read_shards(pattern_dir: Path) -> list[dict]:
    rows = []
    for p in sorted(pattern_dir.rglob("*.jsonl.gz")):
        with gzip.open(p, "rt", encoding="utf-8") as f:
            rows += [json.loads(line) for line in f]
    return rows


def write_pipeline(tmp_path: Path, stages: str, *, tasks: int = 1, inputs: str | None = None, extra: str = "") -> Path:
    text = f"""name: t
input: {{paths: ["{inputs or tmp_path / "in" / "*.jsonl"}"]}}
output: {tmp_path / "out"}
tasks: {tasks}
{extra}stages:
{stages}"""
    path = tmp_path / "pipe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def curate(*args: str) -> subprocess.CompletedProcess:
    """`cptkit curate ARGS` in this process (the CLI's own code path)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["curate", *args])
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())
