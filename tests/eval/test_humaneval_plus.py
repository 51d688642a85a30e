"""HumanEval+ through evalplus's own checker: parity with `evalplus.evaluate` (fixture made by the real package), the
base and plus columns told apart, the data pin of the release file, and the lm-eval task built from fetched rows.

CPU, offline, ~40 s:  pytest tests/eval/test_humaneval_plus.py -q
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from cptkit.cli import main
from cptkit.eval import fetch
from cptkit.eval import humaneval_plus as hep
from cptkit.eval import tasks as eval_tasks
from cptkit.eval.suites import load_suite

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "parity" / "evalplus.json").read_text())
RELEASE_TEXT = "".join(json.dumps(p) + "\n" for p in FIXTURE["problems"])  # the tiny problems, release format
RELEASE_GZ = gzip.compress(RELEASE_TEXT.encode())


@pytest.fixture(autouse=True)
def _evalplus_cache(tmp_path_factory, monkeypatch):
    """evalplus caches ground truth in its cache dir: keep the tests' out of the user's."""
    import evalplus.evaluate

    monkeypatch.setattr(evalplus.evaluate, "CACHE_DIR", str(tmp_path_factory.getbasetemp() / "evalplus-cache"))


def _docs() -> list[dict]:
    return fetch.parse(RELEASE_TEXT, "evalplus")


def test_statuses_and_pass_at_1_match_evalplus_evaluate():
    assert FIXTURE["evalplus_version"] == hep.EVALPLUS_VERSION
    base_scores, plus_scores = [], []
    for doc in _docs():
        reference = FIXTURE["results"][doc["task_id"]]
        completions = [r["completion"] for r in reference]
        got = hep.statuses(hep.problem(doc), completions)
        want = [(r["base_status"], r["plus_status"]) for r in reference]
        assert got == want, (doc["task_id"], [r["probe"] for r in reference])
        scores = hep.pass_at_k(got, ks=(1,))  # the lm-eval hook's arithmetic (the hook: the last test)
        base_scores.append(scores["base_pass@1"])
        plus_scores.append(scores["pass@1"])
    assert sum(base_scores) / len(base_scores) == pytest.approx(FIXTURE["pass_at_k"]["base"]["pass@1"], abs=1e-12)
    assert sum(plus_scores) / len(plus_scores) == pytest.approx(FIXTURE["pass_at_k"]["plus"]["pass@1"], abs=1e-12)


def test_a_completion_right_on_base_tests_only_scores_differently_for_base_and_plus():
    doc = next(d for d in _docs() if d["task_id"] == "HumanEval/2")
    base_only = next(r for r in FIXTURE["results"]["HumanEval/2"] if r["probe"].startswith("base only"))
    assert (base_only["base_status"], base_only["plus_status"]) == ("pass", "fail")  # what evalplus said
    assert hep.process_results(doc, [[base_only["completion"]]]) == {"pass@1": 0.0, "base_pass@1": 1.0}
    right = FIXTURE["results"]["HumanEval/2"][0]["completion"]
    assert hep.process_results(doc, [[right]]) == {"pass@1": 1.0, "base_pass@1": 1.0}


def test_self_check_refuses_a_checker_blind_to_the_plus_tests(monkeypatch):
    real = hep.check
    monkeypatch.setattr(hep, "check", lambda record, expected, completion: (real(record, expected, completion)[0],) * 2)
    hep.self_check.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="not executing programs correctly"):
            hep.self_check()
    finally:
        hep.self_check.cache_clear()


def test_release_file_is_unpacked_and_its_sha256_pin_enforced():
    pin = hashlib.sha256(RELEASE_GZ).hexdigest()
    assert fetch.parse(fetch.unpack(RELEASE_GZ, "u", pin), "evalplus") == _docs()
    with pytest.raises(RuntimeError, match="the template pins"):
        fetch.unpack(RELEASE_GZ + b"\n", "u", pin)
    doc = _docs()[0]
    assert set(doc) == {"task_id", "prompt", "entry_point", "canonical_solution", "evalplus"}
    assert hep.problem(doc) == FIXTURE["problems"][0]  # the release's record, verbatim


def test_template_pins_the_release_evalplus_reads(tmp_path):
    (tmp_path / "s.yaml").write_text(_SUITE)
    (item,) = fetch.plan([load_suite(str(tmp_path / "s.yaml"))])
    assert item.key == "humaneval_plus/v0.1.10/test" and item.kind == "url"
    url, fmt, sha = item.args
    assert url.endswith("/v0.1.10/HumanEvalPlus.jsonl.gz") and fmt == "evalplus"
    assert sha == "272720b90ac375502c8ed23cd791c2a93dfb22a911641a494da74a426c09f101"


def test_fetch_refuses_a_download_that_is_not_the_pinned_file(tmp_path, monkeypatch, capsys):
    class Response:
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def read(self):
            return RELEASE_GZ  # not the real v0.1.10 file

    monkeypatch.setattr(fetch.urllib.request, "urlopen", Response)
    suite = tmp_path / "s.yaml"
    suite.write_text(_SUITE)
    assert main(["eval", "fetch-data", "--suite", str(suite), "--data-root", str(tmp_path / "d")]) == 2
    assert "the template pins 272720b9" in capsys.readouterr().err
    assert not (tmp_path / "d" / "humaneval_plus").exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # get_task_dict: kept for lm-eval < 0.4.13
def test_lm_eval_task_from_fetched_rows_scores_with_evalplus(tmp_path):
    from lm_eval.tasks import TaskManager, get_task_dict

    root = tmp_path / "data"
    fetch.write_jsonl(root / "humaneval_plus/v0.1.10/test.jsonl", _docs())
    rendered = eval_tasks.render(eval_tasks.load_template("humaneval_plus"), tmp_path / "t", root, shots=0)
    task = get_task_dict([rendered.entry], TaskManager(include_path=str(tmp_path / "t"), include_defaults=False))
    task = task[rendered.entry]
    docs = list(task.test_docs())
    assert [d["task_id"] for d in docs] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert task.config.repeats == 10 and task.config.generation_kwargs["temperature"] == 0.2
    assert task.doc_to_text(docs[1]) == FIXTURE["problems"][1]["prompt"]
    right, base_only, syntax_error = (r["completion"] for r in FIXTURE["results"]["HumanEval/0"][:3])
    samples = [right] * 4 + [base_only] * 2 + [syntax_error] * 4
    scores = task.process_results(docs[0], [samples])
    assert scores == pytest.approx({"pass@1": 0.4, "pass@10": 1.0, "base_pass@1": 0.6, "base_pass@10": 1.0})


_SUITE = "name: s\ntasks:\n  - {column: HumanEval+, template: humaneval_plus, shots: 0, metric: 'pass@1,all'}\n"


def test_swallowcode_column_samples_as_many_completions_as_the_seed_did():
    """Seed 000's HumanEval+ values are k / (164 x 10) for whole k: 10 samples per problem. Greedy (k / 164) would
    not give them; the template's `repeats` must."""
    import importlib.resources

    import yaml

    text = (importlib.resources.files("cptkit.eval") / "reference_scores.yaml").read_text(encoding="utf-8")
    published = [row["scores"]["HumanEval+"] for row in yaml.safe_load(text)["swallowcode"]["rows"]]
    assert len(published) == 5

    def fits(n_samples: int) -> bool:
        return all(round(round(v * 164 * n_samples) / (164 * n_samples), 4) == v for v in published)

    repeats = eval_tasks.load_template("humaneval_plus").config["repeats"]
    assert repeats == 10 and fits(repeats)
    assert not fits(1)  # not blind: greedy pass@1 cannot give the published values
