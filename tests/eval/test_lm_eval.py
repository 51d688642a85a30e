"""A local multiple-choice task and a local generation task through lm-eval, on a model whose answers are known.

The hand-set model (conftest.make_tiny_llama) puts all probability on " yes". In the multiple-choice file 6 of 8
questions have "yes" as the keyed answer, so accuracy must be exactly 0.75 (the 2 with another key are the
deliberately wrong inputs that must score 0); in the generation file 2 of 4 targets are what greedy decoding produces,
so exact match must be exactly 0.5. Runs on CPU in ~30 s:  pytest tests/eval/test_lm_eval.py -q
"""

from __future__ import annotations

import json

import pytest

from cptkit.cli import main


def test_local_mc_and_generation_scores_are_exact(preferring_llama, local_data, suite_file, tmp_path, capsys):
    root, sums = local_data
    out = tmp_path / "res.json"
    argv = ["eval", str(preferring_llama), "--suite", str(suite_file), "--data-root", str(root)]
    assert main([*argv, "--output", str(out), "--device", "cpu", "--batch-size", "4"]) == 0
    doc = json.loads(out.read_text())
    assert doc["scores"] == {"MC": 0.75, "Gen": 0.5}
    assert doc["average"] == pytest.approx(0.625)
    mc = doc["tasks"]["MC"]
    assert mc["versions"] == {"cptkit_openbookqa": 1.0}
    assert mc["n_shot"] == {"cptkit_openbookqa": 2}
    assert mc["n_samples"]["cptkit_openbookqa"]["effective"] == 8
    assert [d["files"][0]["sha256"] for d in mc["data"]["cptkit_openbookqa"]] == [sums["mc"]]
    assert doc["tasks"]["Gen"]["data"]["cptkit_triviaqa"][0]["files"][0]["sha256"] == sums["gen"]
    assert doc["tasks"]["Gen"]["configs"]["cptkit_triviaqa"]["generation_kwargs"]["max_gen_toks"] == 3

    # Done is skipped, not redone: the file is left as it was.
    before = out.read_bytes()
    assert main([*argv, "--output", str(out), "--device", "cpu"]) == 0
    assert "skipping" in capsys.readouterr().out
    assert out.read_bytes() == before
    # ... but a --limit smoke run is not the full evaluation: asking for one re-evaluates
    assert main([*argv, "--output", str(out), "--device", "cpu", "--limit", "4"]) == 0
    assert "evaluating again (previous results used --limit None)" in capsys.readouterr().out
    assert json.loads(out.read_text())["tasks"]["MC"]["n_samples"]["cptkit_openbookqa"]["effective"] == 4


def test_missing_data_is_one_line_error_naming_the_file(preferring_llama, tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ntasks:\n  - {column: XWINO, template: xwinograd_en, shots: 4, metric: 'acc,none'}\n")
    code = main(["eval", str(preferring_llama), "--suite", str(suite), "--data-root", str(tmp_path / "empty")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert f"{tmp_path / 'empty'}/xwinograd/en/test.jsonl" in err
    assert "fetch-data" in err


def test_squad2_on_local_files_scored_offline(preferring_llama, tmp_path):
    """lm-eval's SQuAD2 task reads the rendered data and is scored without the hub's `squad_v2` metric."""
    greedy = "yes yes yes yes"  # the hand-set model's answer: " yes" until max_gen_toks (4)
    rows = [
        {"id": str(i), "title": "T", "context": "Some context.", "question": f"Q{i}?",
         "answers": {"text": [greedy if i < 3 else "no"], "answer_start": [0]}}
        for i in range(4)
    ]  # fmt: skip
    root = tmp_path / "data"
    (root / "squad_v2").mkdir(parents=True)
    (root / "squad_v2" / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: s\ntasks:\n  - {column: SQuAD2.0, template: squadv2, shots: 1, metric: 'exact,none',"
        " overrides: {generation_kwargs: {max_gen_toks: 4}}}\n"
    )
    out = tmp_path / "r.json"
    argv = ["eval", str(preferring_llama), "--suite", str(suite), "--data-root", str(root), "--device", "cpu"]
    assert main([*argv, "--output", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["scores"] == {"SQuAD2.0": 0.75}
    assert doc["tasks"]["SQuAD2.0"]["results"]["cptkit_squadv2"]["f1,none"] == pytest.approx(0.75)
