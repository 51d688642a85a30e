"""The mixtures in data_mix/ reproduce swallow-recipes.md §2 and the demo's layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from cptkit.mix import load_mixture
from cptkit.mix.report import summarize
from cptkit.mix.resolve import plan

from .conftest import REPO, run_cli

DATA_MIX = REPO / "data_mix"
SHIPPED = sorted(p.name for p in DATA_MIX.glob("*.yaml"))


def test_every_expected_mixture_ships():
    assert {f"swallowcode_exp{i}.yaml" for i in (1, 2, 3, 4)} | {"swallowmath_exp1.yaml", "demo.yaml"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_mixture_is_consistent(name, data_root):
    m = load_mixture(DATA_MIX / name)
    assert m.name == Path(name).stem
    summary = summarize(m, plan(m))
    # Nothing is off: no group drift, targets sum to the budget; only prefixes missing on disk.
    assert [w for w in summary["warnings"] if "not tokenized" not in w and "not found" not in w] == []
    for sp in plan(m):
        weights = [p.weight_tokens for p in sp.prefixes]
        if None in weights:  # split by each prefix's available tokens: known once the data is there
            assert all(d.tokens is None for d in sp.source.prefixes()), sp.source.name
            continue
        assert sum(weights) == pytest.approx(sp.target_tokens, rel=1e-12)


# §2 table: tokens per source (the script's sums, rounded as in the table).
EXP1 = {
    "ja_wiki": (0.846, 3),
    "swallow_v2_wiki_top10": (15.82, 2),
    "swallow_v2_others": (10.27, 2),
    "laboro_paracorpus": (0.221, 3),
    "en_wiki": (1.107, 3),
    "cosmopedia": (3.732, 3),
    "dclm": (10.0, 3),
    "code": (8.0, 3),
}
CODE_PREFIX = {
    1: "stack_v2_python_all_text_document",
    2: "stack_v2_python_compile_text_document",
    3: "stack_v2_python_compile_pylint_text_document",
    4: "stack_v2_python_compile_pylint_ja_or_en_text_document",
}


def test_swallowcode_exp1_matches_the_recipe(data_root):
    m = load_mixture(DATA_MIX / "swallowcode_exp1.yaml")
    assert m.total_tokens == 50_000_000_000
    assert {k: g.percent for k, g in m.groups.items()} == {"code": 16, "text": 84}
    plans = {sp.source.name: sp for sp in plan(m)}
    assert list(plans) == list(EXP1)
    for name, (billions, digits) in EXP1.items():
        assert round(plans[name].target_tokens / 1e9, digits) == billions, name
    # The script's 210 prefixes, weights summing to exactly 50.000B; one prefix per CC dump.
    weights = [p.weight_tokens for sp in plans.values() for p in sp.prefixes]
    assert len(weights) == 210 and sum(weights) == pytest.approx(50e9, abs=10)
    dumps = [p.prefix for p in plans["swallow_v2_others"].prefixes]
    assert len(dumps) == 94 and all("/Swallow_v2/edu/filter-others/CC-MAIN-" in d for d in dumps)
    assert all(p.prefix.startswith(str(data_root) + "/") for sp in plans.values() for p in sp.prefixes)
    assert plans["code"].source.group == "code" and plans["code"].prefixes[0].prefix.endswith(CODE_PREFIX[1])
    # 16% / 84% as realized by normalised weights.
    assert 100 * plans["code"].target_tokens / sum(weights) == pytest.approx(16.0, abs=1e-6)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_swallowcode_exp2_to_4_swap_only_the_code_source(n, data_root):
    base = load_mixture(DATA_MIX / "swallowcode_exp1.yaml")
    m = load_mixture(DATA_MIX / f"swallowcode_exp{n}.yaml")
    assert m.sources[:-1] == base.sources[:-1]
    assert (m.total_tokens, m.groups, m.tokenizer) == (base.total_tokens, base.groups, base.tokenizer)
    code = m.sources[-1]
    assert code.name == "code" and code.tokens == 8_000_000_000
    assert code.prefix == f"{data_root}/{CODE_PREFIX[n]}"


# The SwallowMath exp1 launch script's --data-path weights (4x tokens), summed per source (okoge-kaz/Megatron-LM,
# branch v0.9.0-tsubame, scripts/tsubame/Llama-3.1-8B/llama-3.1-8B-tp2-pp1-finemath.sh).
MATH_SCRIPT_WEIGHTS = {
    "finemath_4plus": 9_579_886_495,
    "swallowcode": 26_000_000_000,
    "ja_wiki": 3_382_423_156,
    "swallow_corpus_v2": 133_734_902_746,
    "laboro_paracorpus": 882_674_099,
    "en_wiki": 4_426_952_329,
    "cosmopedia": 13_129_340_852,
    "dclm": 8_863_732_719.9,
}


def test_swallowmath_exp1_matches_the_run_script(data_root):
    m = load_mixture(DATA_MIX / "swallowmath_exp1.yaml")
    plans = {sp.source.name: sp for sp in plan(m)}
    assert list(plans) == list(MATH_SCRIPT_WEIGHTS)
    # Each source's target is its script weights / 4, to the token; 50.000B in all, math 2.395B.
    for name, weight in MATH_SCRIPT_WEIGHTS.items():
        assert plans[name].target_tokens == pytest.approx(weight / 4, abs=1), name
    total = sum(sp.target_tokens for sp in plans.values())
    assert m.total_tokens == total and round(total / 1e9, 3) == 50.000
    assert round(plans["finemath_4plus"].target_tokens / 1e9, 3) == 2.395
    # The code prefix is the script's (not the card's `..._compile_pylint`).
    assert (
        plans["swallowcode"].prefixes[0].prefix == f"{data_root}/stack_v2_python_compile_pylint_ja_or_en_text_document"
    )
    # Every prefix's normalised weight equals the script's (the blend Megatron builds is the run's blend).
    weights = [p.weight_tokens for sp in plans.values() for p in sp.prefixes]
    assert len(weights) == 33  # the script's 33 prefixes
    dumps = plans["swallow_corpus_v2"].prefixes
    assert dumps[2].weight_tokens / total == pytest.approx(27_040_695_169 / 199_999_912_396.9, rel=1e-9)
    shares = {g["name"]: g["share_percent"] for g in summarize(m, plan(m))["groups"]}
    assert shares == pytest.approx({"math": 4.79, "code": 13.0, "text": 82.21}, abs=0.01)
    # The card's rounded numbers stay in the file as a comment, not as targets.
    text = (DATA_MIX / "swallowmath_exp1.yaml").read_text()
    assert "49.56B" in text and "4.84%" in text and m.total_tokens != 49_560_000_000


def test_demo_mixture_layout(monkeypatch, tmp_path):
    monkeypatch.delenv("CPTKIT_DEMO_DIR", raising=False)
    m = load_mixture(DATA_MIX / "demo.yaml")
    assert m.tokenizer == "llama3" and 1.5e6 <= m.total_tokens <= 2.5e6
    by = {s.name: s for s in m.sources}
    assert list(by) == ["code", "ja", "en"]
    assert by["code"].group == "code" and by["ja"].group == by["en"].group == "text"
    assert by["code"].prefix == "demo_run/tokenized/code_text_document"
    assert by["code"].input.paths == ["demo_run/raw/code/*.jsonl"]
    assert by["ja"].input.paths == ["demo_run/raw/ja/*.jsonl"] and by["en"].input.paths == ["demo_run/raw/en/*.jsonl"]
    shares = {g["name"]: g["share_percent"] for g in summarize(m, plan(m))["groups"]}
    assert shares == pytest.approx({"code": 16.0, "text": 84.0}, abs=0.1)
    monkeypatch.setenv("CPTKIT_DEMO_DIR", str(tmp_path / "d"))
    assert load_mixture(DATA_MIX / "demo.yaml").sources[1].prefix == f"{tmp_path}/d/tokenized/ja_text_document"


def test_shipped_mixture_without_data_root_names_the_variable(monkeypatch):
    monkeypatch.delenv("DATA_ROOT", raising=False)
    r = run_cli("mix", "show", "data_mix/swallowcode_exp1.yaml", env={"DATA_ROOT": ""})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "data_mix/swallowcode_exp1.yaml: sources[0].prefix: environment variable ${DATA_ROOT} is not set" in r.stderr


def test_missing_prefixes_get_the_advice_that_works(data_root, monkeypatch):
    """`cptkit tokenize MIXTURE` makes only datasets with `input:`; for the others it would fail, so it is not advised."""
    monkeypatch.setenv("CPTKIT_DEMO_DIR", str(data_root / "demo"))  # not a `make demo` output in the checkout
    swallow = summarize(m := load_mixture(DATA_MIX / "swallowcode_exp1.yaml"), plan(m))["warnings"]
    assert not any("run `cptkit tokenize" in w for w in swallow)
    assert any(w.startswith("210 prefix(es) not found and without `input:`") for w in swallow), swallow
    demo = summarize(m := load_mixture(DATA_MIX / "demo.yaml"), plan(m))["warnings"]
    assert any("not tokenized yet: run `cptkit tokenize" in w and "demo.yaml`" in w for w in demo), demo
    assert not any("without `input:`" in w for w in demo)
