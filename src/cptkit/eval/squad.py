"""SQuAD 2.0 on local files, scored without the hub: lm-eval's `SQuAD2` task with two things swapped.

lm-eval's `squadv2` is a Python task whose constructor ignores the YAML (the dataset is a class attribute) and whose
aggregation downloads the `squad_v2` metric from the Hugging Face hub. `LocalSQuAD2` keeps its prompt, requests and
per-document outputs, takes the dataset from the rendered YAML, and computes the official SQuAD 2.0 exact match and
F1 here (answer normalisation as in the official script: lower case, no punctuation, no articles, single spaces; an
unanswerable question's gold answer is the empty string, gold answers that normalize to nothing are dropped; the no-answer probability threshold is 1.0 as in the hub
metric's default, i.e. the generated text is always the prediction), and `best_exact` / `best_f1` at the best
threshold on the probability of " unanswerable" (`best_score`). Scores are fractions in [0, 1], like the seeds.

Lives in a module of its own because importing it imports lm-eval; `tasks/squadv2.yaml` names it with `class:`.
On a CPU:  cptkit eval HF_DIR --suite en --data-root DATA --limit 4 --device cpu
"""

from __future__ import annotations

import collections
import math
import re
import string
from functools import partial

from lm_eval.api.task import ConfigurableTask
from lm_eval.tasks.squadv2.task import SQuAD2

_KEEP = (
    "dataset_path",
    "dataset_name",
    "dataset_kwargs",
    "num_fewshot",
    "fewshot_split",
    "generation_kwargs",
    "metadata",
)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact(gold: str, pred: str) -> float:
    return float(normalize_answer(gold) == normalize_answer(pred))


def f1(gold: str, pred: str) -> float:
    gold_toks, pred_toks = normalize_answer(gold).split(), normalize_answer(pred).split()
    if not gold_toks or not pred_toks:
        return float(gold_toks == pred_toks)
    common = sum((collections.Counter(gold_toks) & collections.Counter(pred_toks)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_toks), common / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def _raw(metric: str, golds: list[str], pred: str) -> float:
    """The best score against any gold answer. As the official script (`get_raw_scores`), gold answers that normalize
    to nothing ("The") are dropped, and a question left without one is scored against the empty answer."""
    fn = exact if metric == "exact" else f1
    return max(fn(g, pred) for g in ([g for g in golds if normalize_answer(g)] or [""]))


def _score(metric, items) -> float:
    """Mean over documents of the best score against any gold answer (`[""]` when unanswerable)."""
    scores = [_raw(metric, golds, pred) for golds, pred, *_ in items]
    return sum(scores) / len(scores) if scores else 0.0


def best_score(metric, items) -> float:
    """The official script's `best_exact` / `best_f1`: the score at the best no-answer probability threshold.

    Questions are taken in ascending no-answer probability; answering a question the threshold lets through adds its
    score if it has an answer, and costs 1 if it has none and the prediction is not empty; abstaining from all
    scores the share of unanswerable questions. The Swallow v0.5 table (seed 003) reports this for SQuAD2.0, the
    SwallowCode/SwallowMath and Future Code Ja tables (seeds 000, 001, 004) the plain `exact` (lm-eval's `exact`).
    """
    if not items:
        return 0.0
    current = best = sum(1 for golds, *_ in items if not golds)
    for golds, pred, _ in sorted(items, key=lambda item: item[2]):
        if golds:
            current += _raw(metric, golds, pred)
        elif pred:  # a non-empty answer to an unanswerable question
            current -= 1
        best = max(best, current)
    return best / len(items)


class LocalSQuAD2(SQuAD2):
    def __init__(self, config=None):
        cfg = {k: v for k, v in (config or {}).items() if k in _KEEP}
        cfg.setdefault("metadata", {"version": self.VERSION})
        ConfigurableTask.__init__(self, config=cfg)  # SQuAD2.__init__ would drop the data source

    # lm-eval 0.4.13's few-shot code passes the few-shot template as a 2nd argument; SQuAD2's methods take one.
    def doc_to_text(self, doc, doc_to_text=None):
        return super().doc_to_text(doc)

    def doc_to_target(self, doc, doc_to_target=None):
        return super().doc_to_target(doc)

    def construct_requests(self, doc, ctx, **kwargs):
        """SQuAD2's requests, with the suite's `generation_kwargs.max_gen_toks` (the backend's default is 256)."""
        requests = super().construct_requests(doc, ctx, **kwargs)
        max_gen_toks = (self.config.generation_kwargs or {}).get("max_gen_toks")
        if max_gen_toks is not None:
            context, gen_kwargs = requests[0].arguments
            requests[0].arguments = (context, {**gen_kwargs, "max_gen_toks": int(max_gen_toks)})
        return requests

    def has_training_docs(self):
        return "train" in self.dataset  # without a train file, few-shot examples come from validation

    def process_results(self, doc, results):
        continuation, (logprob_unanswerable, _) = results
        item = (list(doc["answers"]["text"]), continuation, math.exp(logprob_unanswerable))
        return {"exact": item, "f1": item, "best_exact": item, "best_f1": item}

    def aggregation(self):
        return {
            "exact": partial(_score, "exact"),
            "f1": partial(_score, "f1"),
            "best_exact": partial(best_score, "exact"),
            "best_f1": partial(best_score, "f1"),
        }

    def higher_is_better(self):
        return dict.fromkeys(("exact", "f1", "best_exact", "best_f1"), True)
