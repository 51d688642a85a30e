"""Where lm-eval 0.4.13's task templates render differently from lm-eval 0.4.2's, which scored the Swallow tables.

lm-eval 0.4.2 rendered every Jinja field without `keep_trailing_newline`, so one trailing "\\n" of a description or a
`doc_to_text` disappeared; 0.4.13 keeps it. BBH's chain-of-thought templates end both with a newline, so the same YAML
gives "...expression.\\nQ: ..." there and "...expression.\\n\\nQ: ..." here, and the question ends in
"step by step." there, "step by step.\\n" here (the shots' "\\n" before their answer is the same in both).
Few-shot examples drawn from the test set itself (XWINO has no other split): 0.4.2 drew N examples and dropped the
question being asked if it was among them (that question then has N-1 shots); 0.4.13 either keeps it (a question as
its own example) or draws N+1. The sampler `cptkit_042_test_pool` (`register_samplers`) draws as 0.4.2 did.

MMLU's description ("... about anatomy.\n\n") is the other template the Swallow tables used that ends in one.
`configure` renders 0.4.2's text with 0.4.13, `bbh_configure` too for BBH (tests/eval/test_parity.py compares both
with 0.4.2's own output).
"""

from __future__ import annotations

from pathlib import Path


def _drop_one_newline(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text


def configure(cfg: dict, files: dict) -> None:
    """Drop the one trailing newline 0.4.2 lost from the included template's description and doc_to_text."""
    from cptkit.eval.tasks import FunctionTag, merged_lm_eval_config

    upstream = {**merged_lm_eval_config(Path(cfg["include"])), **{k: v for k, v in cfg.items() if k != "include"}}
    for key in ("description", "doc_to_text"):
        value = upstream.get(key)
        if isinstance(value, str) and not isinstance(value, FunctionTag):
            cfg[key] = _drop_one_newline(value)


def bbh_configure(cfg: dict, files: dict) -> None:
    configure(cfg, files)
    cfg["target_delimiter"] = "\n"  # the newline that doc_to_text no longer ends with, before a shot's answer


def register_samplers() -> None:
    """Add `cptkit_042_test_pool` to lm-eval's samplers (the task YAML names it in `fewshot_config.sampler`)."""
    from lm_eval.api import samplers

    class TestPoolSampler(samplers.ContextSampler):
        def sample(self, n: int, eval_doc=None, df=None, **kwargs):
            if df:
                self.df = df
            drawn = self.rnd.sample(self.fewshot_docs(), n) if n else []
            return [x for x in drawn if x != eval_doc]

    samplers.SAMPLER_REGISTRY.setdefault("cptkit_042_test_pool", TestPoolSampler)
