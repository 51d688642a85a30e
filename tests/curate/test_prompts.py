"""The rewriting prompts are the published ones, byte for byte, and the answer parsers keep what the public
scripts keep.

Run on CPU: `.venv/bin/pytest tests/curate/test_prompts.py -q`.
"""

from __future__ import annotations

import hashlib
import json

from curatehelp import DATA

from cptkit.curate import prompts


def test_prompts_match_public_digests():
    ref = json.loads((DATA / "reference_prompts.json").read_text())
    assert set(ref["prompts"]) == {
        f"{n}.txt" for n in ("sgcr_system", "scor_system", "math_system", "math_example_input", "math_example_output")
    }
    for file, entry in ref["prompts"].items():
        text = prompts.prompt(file.removesuffix(".txt"))
        assert hashlib.sha256(text.encode()).hexdigest() == entry["sha256"], file
    # not blind: one changed character changes the digest
    text = prompts.prompt("scor_system")
    assert hashlib.sha256((text + " ").encode()).hexdigest() != ref["prompts"]["scor_system.txt"]["sha256"]


def test_prompt_content_is_the_papers():
    assert "Please evaluate the following code on a scale of 1 to 10" in prompts.prompt("sgcr_system")
    assert "If given code is not self-contained or too simple" in prompts.prompt("scor_system")
    assert prompts.prompt("math_example_output").rstrip().endswith("#### 820")


def test_messages():
    assert [m["role"] for m in prompts.sgcr_messages("x")] == ["system", "user"]
    assert prompts.scor_messages("code")[1]["content"] == "code"
    math = prompts.math_messages("page")
    assert [m["role"] for m in math] == ["system", "user", "assistant", "user"] and math[-1]["content"] == "page"


SGCR_ANSWER = """Some preamble.
### Evaluation: 6

### Suggestions:
- Use type hints.
- Add a docstring.

### Improved Code:
```python
def add(a: int, b: int) -> int:
    \"\"\"Add two numbers.\"\"\"
    return a + b
```
"""


def test_parse_sgcr():
    out = prompts.parse_sgcr(SGCR_ANSWER)
    assert out["score"] == 6.0
    assert out["suggestions"] == ["- Use type hints.", "- Add a docstring."]
    assert out["improved_code"].startswith("def add(a: int") and out["improved_code"].endswith("return a + b")
    assert prompts.parse_sgcr("### Evaluation: 7/10\n")["score"] == -1.0
    assert "improved_code" not in prompts.parse_sgcr("### Improved Code:\n```\nx = 1\n```\n")  # needs ```python


def test_first_fenced_block():
    assert prompts.first_fenced_block("text\n```python\nx = 1\n```\nmore ```y```") == "x = 1"
    assert prompts.first_fenced_block("```\n  a\n```") == "a"
    assert prompts.first_fenced_block("no block") == ""
    assert prompts.first_fenced_block("```python\nunterminated") == ""
