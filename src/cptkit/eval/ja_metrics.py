"""Metrics of the Japanese suite that lm-eval does not have: character F1 and BLEU with Japanese tokenisation.

- `char_f1`: F1 over the multiset of characters of prediction and answer after NFKC normalisation and removing
  whitespace (JEMHopQA, NIILC, JSQuAD in the Swallow tables are reported as "Char-F1").
- `bleu_ja` / `bleu_en`: corpus BLEU from sacrebleu, as a fraction (the seeds print 0.294, not 29.4); into Japanese
  with sacrebleu's MeCab tokeniser (`BLEU(trg_lang="ja")`, needs `sacrebleu[ja]`), into English with its default 13a.
  The per-document "metric" only passes (reference, prediction) on; BLEU is computed once over the corpus.

Referenced from the task templates as `!function cptkit.eval.ja_metrics.NAME`.
Try it on a CPU:  python -c "from cptkit.eval.ja_metrics import char_f1; print(char_f1(['東京都'], ['東京']))"
"""

from __future__ import annotations

import collections
import unicodedata


def _chars(text: str) -> list[str]:
    return [c for c in unicodedata.normalize("NFKC", text) if not c.isspace()]


def char_f1(references: list[str], predictions: list[str]) -> float:
    gold, pred = _chars(references[0]), _chars(predictions[0])
    if not gold or not pred:
        return float(gold == pred)
    common = sum((collections.Counter(gold) & collections.Counter(pred)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def bleu(references: list[str], predictions: list[str]) -> tuple[str, str]:
    return references[0], predictions[0]


def _bleu(items: list[tuple[str, str]], trg_lang: str) -> float:
    import sacrebleu

    refs = [r for r, _ in items]
    preds = [p.strip() for _, p in items]
    return sacrebleu.BLEU(trg_lang=trg_lang).corpus_score(preds, [refs]).score / 100


def bleu_ja(items: list[tuple[str, str]]) -> float:
    return _bleu(items, "ja")


def bleu_en(items: list[tuple[str, str]]) -> float:
    return _bleu(items, "en")
