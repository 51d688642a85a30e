"""The published SwallowCode / SwallowMath prompts and the parsers of what the model answers.

One module builds the chat messages for every engine (vLLM on GPU nodes, transformers on CPU), so the prompt a test
sees on CPU is the prompt a 70B run sends. The prompt texts are the public ones, byte for byte
(`prompts/*.txt`, written by tests/curate/data/make_reference.py from rioyokotalab/swallow-code-math; their
sha256 is checked by a test):

- SGCR (stage 3, style-guided code rewriting): system = the 10-criteria evaluation prompt, user = the code. The
  answer has `### Evaluation: N`, `### Suggestions:`, `### Improved Code:`; the improved code is the first
  ```` ```python ```` block of the Improved Code section.
- SCOR (stage 4, self-contained optimising rewrite): system = the 9-item prompt, user = the SGCR code. The answer's
  first ``` block is the code; answers of 50 characters or fewer are dropped; a final newline is ensured.
- SwallowMath (finemath-4+ rewrite v1): a one-shot chat (system, example page, example answer, the page); the raw
  answer is the text; prompts over 102,688 characters are skipped and answers of 50 characters or fewer dropped.

    python -c "from cptkit.curate.prompts import sgcr_messages; print(sgcr_messages('x=1')[0]['content'][:80])"
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources


@cache
def prompt(name: str) -> str:
    return (resources.files("cptkit.curate") / "prompts" / f"{name}.txt").read_text(encoding="utf-8")


def sgcr_messages(code: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": prompt("sgcr_system")}, {"role": "user", "content": code}]


def scor_messages(code: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": prompt("scor_system")}, {"role": "user", "content": code}]


def math_messages(page: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": prompt("math_system")},
        {"role": "user", "content": prompt("math_example_input")},
        {"role": "assistant", "content": prompt("math_example_output")},
        {"role": "user", "content": page},
    ]


_PYTHON_BLOCK = re.compile(r"```python\n(.*?)\n```", re.DOTALL)


def parse_sgcr(answer: str) -> dict:
    """Sections of an SGCR answer: `score` (float, -1 if unreadable), `suggestions`, `improved_code` (or absent).

    Sections start at lines beginning with `###`; the name is the rest of the line after the first four
    characters. `Evaluation: N` carries the score in its heading."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in answer.split("\n"):
        if line.startswith("###"):
            current = line[4:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    out: dict = {}
    for name, lines in sections.items():
        content = "\n".join(lines).strip()
        if name.startswith("Evaluation:"):
            try:
                out["score"] = float(name.split(":")[1].strip())
            except ValueError:
                out["score"] = -1.0
        elif name == "Suggestions:":
            out["suggestions"] = [s.strip() for s in content.split("\n") if s.strip()]
        elif name == "Improved Code:":
            m = _PYTHON_BLOCK.search(content)
            if m and m.group(1).strip():
                out["improved_code"] = m.group(1).strip()
    return out


def first_fenced_block(answer: str) -> str:
    """The content of the first ``` block (its language line skipped), stripped; "" when there is none."""
    start = answer.find("```")
    if start == -1:
        return ""
    line_end = answer.find("\n", start)
    if line_end == -1:
        return ""
    end = answer.find("```", line_end)
    if end == -1:
        return ""
    return answer[line_end + 1 : end].strip()
