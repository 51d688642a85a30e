"""The JP Language Model Evaluation Harness's tasks as the Swallow tables ran them: WMT20 en-ja / ja-en and MGSM.

swallow-evaluation runs its pinned copy of the JP harness (an lm-eval 0.3 fork; `scripts/evaluate_ja_wmt20_*.sh`,
`evaluate_ja_mgsm.sh`: 4 shots, all documents, prompt version 0.0). Its few-shot examples cannot be expressed as an
lm-eval 0.4 task config: the evaluator shuffles the test documents with `random.Random(42)` and that same generator
then draws every document's shots, one document after the other (from the train split, or for WMT20, which has none,
from the test set itself without the document scored). `render_contexts` replays exactly that and writes each
document's full prompt into the rendered data (`context`); the lm-eval task then runs 0-shot on `{{context}}`.

- WMT20 (sacrebleu's test sets): "English phrase: {src}\\nJapanese phrase:" (the reverse for ja-en), shots end with
  " {ref}", separated by a blank line; stop at "\\n". Japanese references and predictions are split into words with
  nagisa, then corpus BLEU with sacrebleu's default 13a tokeniser, reported as a fraction (the tables print 0.294).
- MGSM (ja): "問題：{question}\\nステップごとの答え：" + answer; stop at "\\n" or EOS; the answer is the last number in
  the output ("," removed, "." stripped), compared as an integer with `answer_number`.

Check against the harness's own output: tests/eval/test_parity.py (fixtures/make_parity_fixtures.py).
Try it on a CPU:  python -c "from cptkit.eval.jp_harness import extract_mgsm; print(extract_mgsm('答えは4,000です。'))"
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

SEED = 42  # lm_eval/evaluator.py of the JP harness
FEWSHOT_SEP = "\n\n"
INVALID = "[invalid]"
_NUMBER = re.compile(r"(\-?[0-9\.\,]+)")
LANGUAGES = {"en": "English", "ja": "Japanese"}


def wmt_text(doc: dict, pair: str) -> str:
    src, tgt = (LANGUAGES[c] for c in pair.split("-"))
    return f"{src} phrase: {doc['source']}\n{tgt} phrase:"


def wmt_target(doc: dict) -> str:
    return " " + doc["target"]


def mgsm_text(doc: dict) -> str:
    return f"問題：{doc['question'].replace('問題：', '')}\nステップごとの答え："


def mgsm_target(doc: dict) -> str:
    return (doc.get("answer") or "").replace("ステップごとの答え：", "")


def contexts(docs: list[dict], shots: int, train: list[dict] | None, text, target) -> list[tuple[dict, str]]:
    """(document, prompt) in the order the JP harness evaluates them (shuffled), with its shots."""
    order = list(docs)
    rnd = random.Random()
    rnd.seed(SEED)
    rnd.shuffle(order)
    out = []
    for doc in order:
        if shots == 0:
            examples = []
        elif train is not None:
            examples = rnd.sample(train, shots)
        else:  # no training docs: draw one more from the test set, drop the document itself
            examples = [x for x in rnd.sample(docs, shots + 1) if x != doc][:shots]
        labeled = FEWSHOT_SEP.join(text(x) + target(x) for x in examples) + FEWSHOT_SEP if examples else ""
        out.append((doc, labeled + text(doc)))
    return out


def _read_jsonl(paths) -> list[dict]:
    rows = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            rows.extend(json.loads(line) for line in f if line.strip())
    return rows


def configure(cfg: dict, files: dict, *, kind: str, out_dir: Path, pair: str = "") -> None:
    """Render-time: write every test document with its full prompt and make the task read that file, 0-shot."""
    shots = int(cfg.get("num_fewshot") or 0)
    test = _read_jsonl(files["test"].files)
    if kind == "wmt20":
        rendered = contexts(test, shots, None, lambda d: wmt_text(d, pair), wmt_target)
    else:
        train = _read_jsonl(files["train"].files) if shots else []
        rendered = contexts(test, shots, train, mgsm_text, mgsm_target)
    run_rendered_contexts(cfg, [{**doc, "context": context} for doc, context in rendered], out_dir, shots)


def run_rendered_contexts(cfg: dict, rows: list[dict], out_dir: Path, shots: int) -> None:
    """Write the documents with their full prompts (`context`) and make the task read that file, 0-shot: the harness's
    shots are inside `context`. Shared by the JP harness's tasks (MGSM, WMT20, XL-Sum)."""
    path = Path(out_dir) / f"{cfg['task']}.contexts.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    cfg["dataset_path"] = "json"
    cfg["dataset_kwargs"] = {"data_files": {"test": [str(path)]}}
    for split in ("training_split", "validation_split", "fewshot_split"):
        cfg.pop(split, None)
    cfg["test_split"] = "test"
    cfg["doc_to_text"] = "{{context}}"
    cfg["num_fewshot"] = 0
    cfg.setdefault("metadata", {})["num_fewshot_in_context"] = shots


# ---- scoring ---------------------------------------------------------------------------------------------------------


def ja_words(text: str) -> str:
    import nagisa

    return " ".join(nagisa.tagging(text.strip()).words)


def wmt_process_results_ja(doc: dict, results: list[str]) -> dict:
    return {"bleu": (ja_words(doc["target"]), ja_words(results[0]))}


def wmt_process_results_en(doc: dict, results: list[str]) -> dict:
    return {"bleu": (doc["target"], results[0])}


def corpus_bleu(items: list[tuple[str, str]]) -> float:
    """sacrebleu's corpus BLEU (13a) as a fraction; items are (reference, prediction)."""
    import sacrebleu

    refs = [r for r, _ in items]
    preds = [p for _, p in items]
    return sacrebleu.corpus_bleu(preds, [refs]).score / 100


def extract_mgsm(completion: str) -> int | str:
    matches = _NUMBER.findall(completion)
    if matches:
        text = matches[-1].strip(".").replace(",", "")
        try:
            value = float(text)
        except ValueError:
            return INVALID
        if value.is_integer():
            return int(value)
    return INVALID


def mgsm_process_results(doc: dict, results: list[str]) -> dict:
    return {"acc": float(extract_mgsm(results[0]) == doc["answer_number"])}
