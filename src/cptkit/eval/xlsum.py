"""XL-Sum (ja) as the JP Language Model Evaluation Harness scored it for the Swallow tables (seed 003).

swallow-evaluation's `scripts/evaluate_ja_xlsum.sh` runs task `xlsum_ja` (class XLSumJa, prompt version 0.0) of its
pinned JP harness, 1 shot, all 766 test documents of `mkshing/xlsum_ja`, model `hf-causal-experimental` with
`add_special_tokens=False`, batch size 2. What that run does, and what cptkit replays here:

- Prompt: "与えられたニュース記事を要約してください。\\n\\n" + shot + "\\n\\n" + "ニュース記事:{text}\\n要約:", the
  shot being "ニュース記事:{text}\\n要約:{summary}". Documents are shuffled with `random.Random(42)` and that generator
  draws each document's shot from the train split (cptkit.eval.jp_harness.contexts).
- The evaluator hands the task the *model's* tokenizer (`set_tokenizer`, replacing its MeCab tokenizer), so every
  length below and the ROUGE-2 tokens are the model's subword tokens.
- `max_length` is the config's `max_position_embeddings`, capped at 4096 by Swallow's patch (Llama-3.1: 4096).
  A prompt longer than `max_length - (tokens of the gold summary + 10)` is cut: every article (the shot's and the
  document's) keeps its first sentences ("。"-split) that fit into an equal share of that budget, a first sentence
  longer than the share is cut token by token (`truncate_context`).
- Generation: greedy, stop at "\\n" (and EOS), at most 256 new tokens: the model class ignores the request's
  per-document limit and uses its `max_gen_toks` (256); that limit only sizes the prompt budget above. The model
  keeps the last `max_length - 256` tokens of each prompt.
- The model class then slices each batch's continuation at the *untruncated* batch width, so in a batch (2 prompts,
  sorted by token length) whose longest prompt exceeds `max_length - 256` tokens, the first (width - (max_length -
  256)) generated tokens of both rows are lost and the prediction is what follows, up to its next "\\n", of the text
  generated until the batch stopped (both rows past a "\\n", both at EOS, or 256 tokens). `harness_batches` finds
  those batches exactly; when a prompt has such a partial loss the task generates without the "\\n" stop (to EOS or
  256 tokens) and `harness_predictions` replays the batch's stop and the slice on the re-tokenized outputs.
- Decoding: transformers 4.x (the harness's) honoured the tokenizer config's `clean_up_tokenization_spaces` (true
  for Llama-3.1), transformers 5 skips it for BPE: `load_tokenizer` forces it, so `harness_predictions` decodes as
  the harness did.
- Metric: rouge-score's RougeScorer(["rouge2"], tokenizer=model tokenizer), BootstrapAggregator (1,000 resamples
  drawn from NumPy's global generator, which simple_evaluate seeded with 1234), the "mid" F-measure, x100 in the
  harness's JSON; the table divides by 100 (column-path-key.csv), as reported here.

Check against the harness's own output: tests/eval/test_parity.py (fixtures/make_parity_fixtures.py, part xlsum).
Try it on a CPU:  python -c "from cptkit.eval.xlsum import doc_to_text; print(doc_to_text({'text': '記事。'}))"
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from cptkit.errors import UserError
from cptkit.eval import jp_harness

DESCRIPTION = "与えられたニュース記事を要約してください。\n\n"
CTX_PROMPT = "ニュース記事:"
SUMMARY_PROMPT = "要約:"
SEP = "\n"
SUMMARY_BUFFER_TOKENS = 10  # XLSumJa.construct_requests: gold summary length + 10
GEN_TOKENS = 256  # hf-causal-experimental's max_gen_toks default, the limit generation really had
MAX_LENGTH_CAP = 4096  # Swallow's patch to the JP harness's HF model class
BATCH_SIZE = 2  # scripts/evaluate_ja_xlsum.sh
NUMPY_SEED = 1234  # lm_eval/evaluator.py simple_evaluate


def doc_to_text(doc: dict) -> str:
    return f"{CTX_PROMPT}{doc['text']}\n{SUMMARY_PROMPT}"


def doc_to_target(doc: dict) -> str:
    return doc["summary"]


def harness_max_length(config: dict, source: str = "config.json") -> int:
    """The JP harness's `max_length` for a model config: the first of n_positions, max_position_embeddings, n_ctx,
    with max_position_embeddings capped at 4096."""
    cfg = dict(config)
    if cfg.get("max_position_embeddings", 0) > MAX_LENGTH_CAP:
        cfg["max_position_embeddings"] = MAX_LENGTH_CAP
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        if key in cfg:
            return int(cfg[key])
    raise UserError(f"{source}: no max_position_embeddings (nor n_positions, n_ctx)", field="max_position_embeddings")


@functools.lru_cache(maxsize=4)
def load_tokenizer(model_dir: str):
    """The model's tokenizer as the harness's transformers 4.x had it (evaluate_ja_xlsum.sh: use_fast=True): its
    decode honours the tokenizer config's `clean_up_tokenization_spaces` (true for Llama-3.1: " ." -> "."), which
    transformers 5 skips for BPE tokenizers unless told."""
    from transformers import AutoTokenizer

    flag = "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output"
    return AutoTokenizer.from_pretrained(model_dir, use_fast=True, **{flag: True})


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False))


def truncate_context(ctx: str, max_tokens: int, tokenizer) -> str:
    """The harness's `preprocess_ctx`: a prompt over `max_tokens` keeps, per article, the leading sentences that fit
    into max_tokens // (number of articles), ending with "。\\n"."""
    if n_tokens(tokenizer, ctx) <= max_tokens:
        return ctx
    parts = [CTX_PROMPT + p for p in ctx.split(CTX_PROMPT)]
    out = ""
    if SUMMARY_PROMPT not in parts[0]:  # the task description before the first article
        out = parts[0].replace(CTX_PROMPT, "")
        parts = parts[1:]
    share = max_tokens // len(parts)
    for part in parts:
        text, summary = part.split(SUMMARY_PROMPT)
        kept: list[str] = []
        for sentence in text.split("。"):
            if n_tokens(tokenizer, "。".join([*kept, sentence])) > share:
                if kept:
                    kept[-1] += "。" + SEP
                else:  # one sentence longer than the share: its first `share` tokens
                    ids = tokenizer.encode(sentence, add_special_tokens=False)[:share]
                    kept.append(tokenizer.decode(ids, skip_special_tokens=True) + SEP)
                break
            kept.append(sentence)
        out += "。".join(kept) + SUMMARY_PROMPT + summary
    return out


def harness_batches(contexts: list[str], tokenizer, max_length: int) -> list[tuple[int, int]]:
    """(batch number, generated tokens lost) per prompt: the harness's greedy_until sorts distinct prompts by
    (token length, text), generates in batches of 2, keeps the last max_length - 256 tokens of each and slices the
    outputs at the untruncated batch width."""
    lengths = {c: n_tokens(tokenizer, c) for c in contexts}
    order = sorted(lengths, key=lambda c: (lengths[c], c))
    keep = max_length - GEN_TOKENS
    where: dict[str, tuple[int, int]] = {}
    for i in range(0, len(order), BATCH_SIZE):
        batch = order[i : i + BATCH_SIZE]
        width = max(lengths[c] for c in batch)
        for c in batch:
            where[c] = (i // BATCH_SIZE, max(0, width - keep))
    return [where[c] for c in contexts]


def render(test: list[dict], train: list[dict], shots: int, tokenizer, max_length: int) -> list[dict]:
    """Test rows in the harness's order with `context` (the prompt it built), `max_num_tokens` (its per-document
    limit: gold summary tokens + 10) and `harness_lost_tokens`."""
    rows = []
    for doc, labeled in jp_harness.contexts(test, shots, train if shots else None, doc_to_text, doc_to_target):
        limit = n_tokens(tokenizer, doc["summary"]) + SUMMARY_BUFFER_TOKENS
        context = truncate_context(DESCRIPTION + labeled, max_length - limit, tokenizer)
        rows.append({**doc, "context": context, "max_num_tokens": limit})
    for row, (batch, lost) in zip(
        rows, harness_batches([r["context"] for r in rows], tokenizer, max_length), strict=True
    ):
        row["harness_batch"], row["harness_lost_tokens"] = batch, lost
    return rows


def configure(cfg: dict, files: dict, *, out_dir: Path, model_dir: Path | None = None) -> None:
    """Render-time: write every test document with its full prompt (tokenizer-dependent) and run it 0-shot."""
    shots = int(cfg.get("num_fewshot") or 0)
    test = jp_harness._read_jsonl(files["test"].files)
    train = jp_harness._read_jsonl(files["train"].files) if shots else []
    if model_dir is None:  # `--dry-run`: no model to count tokens with; nothing is scored from this
        rows = [{**d, "context": DESCRIPTION + c} for d, c in jp_harness.contexts(test, shots, train or None,
                                                                                 doc_to_text, doc_to_target)]  # fmt: skip
        max_length = None
    else:
        config_path = Path(model_dir) / "config.json"
        max_length = harness_max_length(json.loads(config_path.read_text(encoding="utf-8")), str(config_path))
        rows = render(test, train, shots, load_tokenizer(str(model_dir)), max_length)
    tokenizer = str(model_dir) if model_dir else None
    jp_harness.run_rendered_contexts(cfg, [{**row, "tokenizer": tokenizer} for row in rows], out_dir, shots)
    meta = cfg["metadata"]
    meta["cptkit_max_length"] = max_length  # the model keeps the last max_length - max_gen_toks prompt tokens
    lost = [r.get("harness_lost_tokens", 0) for r in rows]  # shown in the results JSON's task config
    meta["harness_outputs_lost"] = {
        "emptied": sum(n >= GEN_TOKENS for n in lost),
        "cut": sum(0 < n < GEN_TOKENS for n in lost),
    }
    if meta["harness_outputs_lost"]["cut"]:  # what such a prompt keeps depends on text after its "\n"
        cfg["generation_kwargs"] = {**cfg.get("generation_kwargs", {}), "until": []}


# ---- scoring ---------------------------------------------------------------------------------------------------------


def harness_predictions(items: list[tuple]) -> list[str]:
    """The predictions the harness kept, from (lm-eval output, gold, tokenizer, batch, lost tokens) items: its
    decode (with the config's space clean-up), the batch's stop step, the slice at the untruncated width, the text
    before "\\n". Token counts come from re-tokenizing each output."""
    model_dir = items[0][2]
    tokenizer = load_tokenizer(model_dir)
    clean = None if not _lm_eval_cleans_up(model_dir) else False  # decode as the harness did, clean-up once
    ids = [tokenizer.encode(text, add_special_tokens=False) for text, *_ in items]
    never = GEN_TOKENS + 1
    has_newline: dict[int, bool] = {}
    ends: dict = {}  # batch -> [(step of its first "\n" token, step of its EOS)] per row
    for row, (_, _, _, batch, _) in zip(ids, items, strict=True):
        for t in row:
            if t not in has_newline:
                has_newline[t] = SEP in tokenizer.decode([t])  # MultiTokenEOSCriteria: "\n" in the last token
        newline = next((i + 1 for i, t in enumerate(row) if has_newline[t]), never)
        eos = len(row) + 1 if len(row) < GEN_TOKENS else never  # lm-eval ran to EOS (or the 256 limit)
        ends.setdefault(batch, []).append((newline, eos))
    predictions = []
    for row, (_, _, _, batch, lost) in zip(ids, items, strict=True):
        steps = len(row)  # a kept prediction, not from a batch
        if batch is not None:  # generate() stops once every row met "\n" or every row EOS (harness's criteria, HF's)
            steps = min(GEN_TOKENS, max(n for n, _ in ends[batch]), max(e for _, e in ends[batch]))
        text = tokenizer.decode(row[lost:steps], skip_special_tokens=True, clean_up_tokenization_spaces=clean)
        predictions.append(text.split(SEP)[0])
    return predictions


@functools.lru_cache(maxsize=4)
def _lm_eval_cleans_up(model_dir: str) -> bool:
    """Whether the tokenizer as lm-eval loads it already cleaned up the output (transformers 4.x) or not (5.x)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, use_fast=True)
    return tokenizer.decode(tokenizer.encode("a .", add_special_tokens=False)) == "a."


def process_results(doc: dict, results: list[str]) -> dict:
    batch, lost = doc.get("harness_batch"), int(doc.get("harness_lost_tokens") or 0)
    return {"rouge2": (results[0], doc["summary"], doc["tokenizer"], batch, lost)}


def rouge2(items: list[tuple]) -> float:
    """The harness's `rouge2_mecab` with the model's tokenizer: bootstrap "mid" F-measure, as a fraction. Items are
    process_results' (output, gold, tokenizer, batch, lost tokens), or (prediction, gold, tokenizer) as kept."""
    import numpy as np
    from rouge_score import rouge_scorer, scoring

    tokenizers = {item[2] for item in items}
    if len(tokenizers) != 1 or None in tokenizers:
        raise ValueError(f"XL-Sum items name tokenizers {sorted(map(str, tokenizers))}; expected one model's")
    scorer = rouge_scorer.RougeScorer(["rouge2"], tokenizer=load_tokenizer(tokenizers.pop()))
    aggregator = scoring.BootstrapAggregator()
    predictions = harness_predictions(items) if len(items[0]) > 3 else [item[0] for item in items]
    for prediction, item in zip(predictions, items, strict=True):
        aggregator.add_scores(scorer.score(item[1], prediction))
    state = np.random.get_state()  # the harness drew from the global generator right after seeding it
    np.random.seed(NUMPY_SEED)
    try:
        result = aggregator.aggregate()
    finally:
        np.random.set_state(state)
    return result["rouge2"].mid.fmeasure * 100 / 100  # harness JSON x100, table /100: the same float as the seed's
