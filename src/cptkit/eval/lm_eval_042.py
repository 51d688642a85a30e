"""Where lm-eval 0.4.13's task templates render differently from lm-eval 0.4.2's, which scored the Swallow tables.

lm-eval 0.4.2 rendered every Jinja field without `keep_trailing_newline`, so one trailing "\\n" of a description or a
`doc_to_text` disappeared; 0.4.13 keeps it. BBH's chain-of-thought templates end both with a newline, so the same YAML
gives "...expression.\\nQ: ..." there and "...expression.\\n\\nQ: ..." here, and the question ends in
"step by step." there, "step by step.\\n" here (the shots' "\\n" before their answer is the same in both).
`bbh_configure` renders 0.4.2's text with 0.4.13 (tests/eval/test_parity.py compares with 0.4.2's own output).
"""

from __future__ import annotations

from pathlib import Path


def _drop_one_newline(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text


def bbh_configure(cfg: dict, files: dict) -> None:
    from cptkit.eval.tasks import merged_lm_eval_config

    upstream = merged_lm_eval_config(Path(cfg["include"]))
    cfg["description"] = _drop_one_newline(upstream.get("description", ""))
    cfg["doc_to_text"] = _drop_one_newline(upstream["doc_to_text"])
    cfg["target_delimiter"] = "\n"  # the newline that doc_to_text no longer ends with, before a shot's answer
