"""SQuAD 2.0 against lm-eval 0.4.2 as swallow-evaluation pins it (fixtures/parity/lm_eval_en.json, `squadv2`, made by
fixtures/make_parity_fixtures.py from the fork's `SQuAD2` task and the hub's `squad_v2` metric source): the same
4-shot requests byte for byte, and the same `exact` (seeds 000/001/004's SQuAD2.0 column) and `best_exact` (seed
003's) for fixed predictions. Runs in a few seconds:  pytest tests/eval/test_parity_squad.py
"""

from __future__ import annotations

import json

import pytest
from test_parity import FIXTURES, _maker, built_task, write_rows

from cptkit.eval import squad
from cptkit.eval import tasks as eval_tasks
from cptkit.eval.suites import load_suite

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

REF = json.loads((FIXTURES / "parity" / "lm_eval_en.json").read_text(encoding="utf-8"))["squadv2"]
METRICS = ("exact", "f1", "best_exact", "best_f1")


def _task(tmp_path):
    maker = _maker()
    write_rows(tmp_path / "data", "squad_v2", {"train": maker.SQUAD_TRAIN, "validation": maker.SQUAD_VALIDATION})
    rendered = eval_tasks.render(eval_tasks.load_template("squadv2"), tmp_path / "tasks", tmp_path / "data", shots=4)
    task = built_task(tmp_path / "tasks", rendered.entry)
    task.build_all_requests(limit=None, rank=0, world_size=1)
    return task


def _scores(task) -> dict[str, float]:
    docs = list(task.validation_docs())
    items: dict[str, list] = {}
    for i, generated, logprob in _maker().SQUAD_PREDS:
        for key, item in task.process_results(docs[i], (generated, (logprob, False))).items():
            items.setdefault(key, []).append(item)
    return {key: task.aggregation()[key](items[key]) for key in METRICS}


def test_squad2_requests_match_lm_eval_042(tmp_path):
    task = _task(tmp_path)
    got = [
        [i.doc_id, i.request_type, *json.loads(json.dumps(i.args))]
        for i in sorted(task.instances, key=lambda i: (i.doc_id, i.request_type))
    ]
    # 0.4.2's requests name no max_gen_toks (its HF backend then generates 256); cptkit's name it
    for request in got:
        if request[1] == "generate_until":
            assert request[3].pop("max_gen_toks") == REF["hf_default_max_gen_toks"] == 256
    assert got == REF["requests"]  # 4 shots drawn as 0.4.2 drew them, "Answer:  unanswerable", until "\n"
    assert len(got) == 2 * len(_maker().SQUAD_VALIDATION)


def test_squad2_scores_match_the_hub_metric(tmp_path):
    got = _scores(_task(tmp_path))
    want = {k: v / 100 for k, v in REF["scores"].items()}  # the hub metric reports percentages
    assert got == pytest.approx(want, abs=1e-12)
    assert want["exact"] != want["best_exact"]  # the fixture tells the two settings apart


def test_a_gold_answer_that_normalizes_to_nothing_is_dropped(tmp_path, monkeypatch):
    """Not blind: scoring against every gold answer (as cptkit did before) gives "the" credit for gold "The"."""

    def every_gold(metric, golds, pred):
        fn = squad.exact if metric == "exact" else squad.f1
        return max(fn(g, pred) for g in (golds or [""]))

    task = _task(tmp_path)
    monkeypatch.setattr(squad, "_raw", every_gold)
    got = _scores(task)
    assert got["exact"] == pytest.approx(4 / 6) and got["exact"] != pytest.approx(REF["scores"]["exact"] / 100)


def test_which_suite_reads_which_setting():
    metric = {s: next(t.metric for t in load_suite(s).tasks if t.column == "SQuAD2.0") for s in (
        "swallow_v05_en", "en", "swallowcode", "swallowmath")}  # fmt: skip
    assert metric == {
        "swallow_v05_en": "best_exact,none",  # seed 003
        "en": "best_exact,none",
        "swallowcode": "exact,none",  # seed 000
        "swallowmath": "exact,none",  # seed 001
    }
