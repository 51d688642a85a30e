"""Fixtures for the evaluation tests: a tiny Llama whose answers are known in advance, made here, never downloaded."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

PREFERRED_WORD = " yes"  # the one token the hand-set model puts all its probability on


def make_tiny_llama(out: Path, tokenizer_dir: Path, *, preferred: str | None = PREFERRED_WORD) -> Path:
    """Save a 2-layer Llama with the real Llama-3 tokenizer.

    With `preferred`, the weights are set so that the model's next-token distribution is (numerically) one-hot on
    that token at every position: attention and MLP outputs are zeroed, so the last hidden state is the token's
    embedding, whose first coordinate is 1; the final norm keeps only that coordinate; the output layer maps it to the
    preferred token. Greedy decoding then repeats the token and log-likelihoods favour exactly the continuations made
    of it, so a test knows every expected score. Without `preferred` the weights are random.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_dir / "tokenizer.json"),
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
    )
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=preferred is None,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = LlamaForCausalLM(cfg)
    if preferred is not None:
        ids = tok.encode(preferred, add_special_tokens=False)
        assert len(ids) == 1, f"{preferred!r} must be one token, got {ids}"
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.o_proj.weight.zero_()
                layer.mlp.down_proj.weight.zero_()
            model.model.embed_tokens.weight[:, 0] = 1.0
            model.model.norm.weight.zero_()
            model.model.norm.weight[0] = 1.0
            model.lm_head.weight.zero_()
            model.lm_head.weight[ids[0], 0] = 20.0
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session", autouse=True)
def _few_torch_threads():
    """The machine is shared: evaluation tests use at most 2 threads (OMP_NUM_THREADS may be read too late)."""
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def preferring_llama(tmp_path_factory, llama3_tokenizer) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("hf") / "yes_model", llama3_tokenizer)


MC_KEYS = ["A", "A", "A", "B", "A", "A", "C", "A"]  # "A" is always the choice "yes"
GEN_ALIASES = [["yes yes yes"], ["no"], ["Yes yes yes."], ["maybe"]]


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def local_data(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("eval_data")
    mc = [
        {
            "id": str(i),
            "question_stem": f"Is {i} a number",
            "choices": {"text": ["yes", "no", "purple"], "label": ["A", "B", "C"]},
            "answerKey": key,
        }
        for i, key in enumerate(MC_KEYS)
    ]
    gen = [{"question": f"Question number {i}", "answer": {"aliases": a}} for i, a in enumerate(GEN_ALIASES)]
    sums = {
        "mc": _write_jsonl(root / "openbookqa/main/validation.jsonl", mc),
        "gen": _write_jsonl(root / "trivia_qa/rc.nocontext/validation.jsonl", gen),
    }
    return root, sums


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "local.yaml"
    path.write_text(
        """
name: local
tasks:
  - {column: MC, template: openbookqa, shots: 2, metric: "acc,none"}
  - column: Gen
    template: triviaqa
    shots: 1
    metric: "exact_match,remove_whitespace"
    overrides: {generation_kwargs: {until: ["\\n", "."], do_sample: false, max_gen_toks: 3}}
"""
    )
    return path
