"""The seed runs without a public per-source mixture: Llama-3.1-Swallow-8B-v0.5 (seed 003) and
Llama-3.1-Future-Code-Ja-8B (seed 004). Their recipes plan, their mixtures hold the seeds' totals, and every number
the seeds do not give is marked as an assumption next to the source it concerns."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cptkit.mix import load_mixture
from cptkit.mix.report import summarize
from cptkit.mix.resolve import plan as mix_plan
from cptkit.train.plan import make_plan
from cptkit.train.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", str(tmp_path / "data"))


def source_comments(path: Path) -> dict[str, str]:
    """Each source's name -> the comment block written just above it."""
    out, block = {}, []
    for line in path.read_text().splitlines():
        if line.strip().startswith("#"):
            block.append(line)
        elif m := re.match(r"  - name: (\S+)", line):
            out[m.group(1)] = "\n".join(block)
            block = []
        else:
            block = []
    return out


def test_assumption_check_is_not_blind(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text("sources:\n  # Seed: 3B.\n  - name: a\n  # Assumption: 1%.\n  - name: b\n")
    notes = source_comments(f)
    assert "Assumption" not in notes["a"] and "Assumption" in notes["b"]


SEED_003_SOURCES = [
    "ja_wiki",
    "swallow_v2_wiki_top10",
    "swallow_v2_llm_top10",
    "swallow_v2_gemma2_qa",
    "laboro_paracorpus",
    "en_wiki",
    "cosmopedia",
    "dclm",
    "swallowcode",
    "swallowmath",
]


def test_swallow_v05_starts_from_the_instruct_model_on_seed_003_sources():
    r = load_recipe(REPO / "recipes/swallow_v05_210b.yaml")
    assert r.model.init_checkpoint.endswith("/llama-3.1-8b-instruct-mcore")
    assert (r.optimizer.lr, r.optimizer.min_lr, r.optimizer.clip_grad, r.optimizer.weight_decay) == (
        2.5e-5, 2.5e-6, 1.0, 0.1,
    )  # fmt: skip
    p = make_plan(r)
    assert (r.training.global_batch_size, p.train_iters, p.train_tokens) == (1024, 25_000, 209_715_200_000)

    path = REPO / r.data.mixture
    m = load_mixture(path)
    assert m.total_tokens == 210_000_000_000 and [s.name for s in m.sources] == SEED_003_SOURCES
    plans = mix_plan(m)
    assert sum(sp.target_tokens for sp in plans) == pytest.approx(210e9, rel=1e-9)
    shares = {g["name"]: g["share_percent"] for g in summarize(m, plans)["groups"]}
    assert shares == pytest.approx({"code": 13.0, "math": 4.79, "text": 82.21}, abs=0.01)
    # No per-source number is in seed 003: every source says its share is assumed and which origin it comes from.
    for name, note in source_comments(path).items():
        assert "Assumption [" in note, name
    assert "[exp1]" in path.read_text() and "[qa]" in path.read_text()


def test_future_code_ja_has_seed_004_totals_and_fim_on_code_only():
    r = load_recipe(REPO / "recipes/future_code_ja.yaml")
    assert r.model.init_checkpoint.endswith("/llama-3.1-8b-mcore")  # the base; merged with Instruct afterwards
    p = make_plan(r)
    assert p.train_iters == 34_643 and p.train_tokens >= 290_600_000_000

    path = REPO / r.data.mixture
    m = load_mixture(path)
    by_group: dict[str, float] = {}
    for sp in mix_plan(m):
        by_group[sp.source.group] = by_group.get(sp.source.group, 0.0) + sp.target_tokens
        # FIM on every code source (The Stack v2, Jupyter pairs, GitHub issues), never on the natural language.
        assert (sp.source.fim is not None) == (sp.source.group == "code"), sp.source.name
        if sp.source.fim is not None:
            assert (sp.source.fim.rate, sp.source.fim.spm_rate, sp.source.fim.no_newline_start) == (0.5, 0.5, True)
    assert by_group == pytest.approx({"code": 204.9e9, "text": 85.7e9}, rel=1e-9)
    names = [s.name for s in m.sources if s.group == "code"]
    assert names == ["stack_v2", "jupyter_code_text_pairs", "github_issues"]
    assert len(m.sources[0].datasets) >= 16  # many languages, one prefix each
    for name, note in source_comments(path).items():
        assert "Assumption [" in note, name


@pytest.mark.parametrize("recipe", ["swallow_v05_210b", "future_code_ja"])
def test_plan_and_train_dry_run_cli(recipe):
    for argv in (["plan", f"recipes/{recipe}.yaml"], ["train", f"recipes/{recipe}.yaml", "--dry-run"]):
        r = subprocess.run(
            [sys.executable, "-m", "cptkit.cli", *argv], capture_output=True, text=True, cwd=REPO, timeout=120
        )
        assert r.returncode == 0, r.stderr
        assert f"data_mix/{'swallow_v05' if recipe.startswith('swallow') else recipe}.yaml" in r.stdout


def test_mix_show_lists_the_fim_sources():
    r = subprocess.run(
        [sys.executable, "-m", "cptkit.cli", "mix", "show", "data_mix/future_code_ja.yaml"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    fim = [line for line in r.stdout.splitlines() if line.startswith("fim: ")]
    assert fim == [
        f"fim: {name}: rate 0.5, SPM 0.5, split on characters"
        for name in ("stack_v2", "jupyter_code_text_pairs", "github_issues")
    ]
