"""Every pipeline in data_curation/ loads, and dry-runs against a stand-in of the files it expects; each data_mix
SwallowCode experiment names the pipeline that makes its code source.

Run on CPU: `.venv/bin/pytest tests/curate/test_recipes.py -q`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from curatehelp import curate

from cptkit.curate.config import load_pipeline

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "data_curation").glob("*.yaml"))


def test_recipes_exist():
    names = {p.stem for p in RECIPES}
    assert {"swallowcode_exp2", "swallowcode_exp3", "swallowcode_exp4", "swallowcode", "swallowmath"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_dry_runs(recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("RAW_ROOT", str(tmp_path / "raw"))
    monkeypatch.setenv("CURATE_ROOT", str(tmp_path / "curated"))
    monkeypatch.setenv("MODEL_ROOT", str(tmp_path / "models"))
    pipe = load_pipeline(recipe)
    for pattern in pipe.input.paths:  # one stand-in file where the recipe looks
        name = "part-0.parquet" if pipe.input.format == "parquet" else "part-0.jsonl.gz"
        stand_in = Path(
            pattern.replace("**/", "").replace("*.jsonl*", name).replace("*.jsonl.gz", name).replace("*.parquet", name)
        )
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_bytes(b"")
    r = curate(str(recipe), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert f"output: {tmp_path}/curated/" in r.stdout and "1 " in r.stdout
    for stage in pipe.stages:
        assert f"{stage.label}: " in r.stdout
    assert ("nodes: GPU" in r.stdout) == pipe.needs_gpu == any(hasattr(s, "engine") for s in pipe.stages)
    if pipe.needs_gpu:
        assert pipe.gpus_per_shard in (4, 8) and f"{pipe.gpus_per_shard} GPU(s) per shard" in r.stdout
        assert "Llama-3.3-70B-Instruct" in r.stdout and "temperature: 0.2" in r.stdout and "top_p: 0.7" in r.stdout


def test_unset_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("RAW_ROOT", raising=False)
    r = curate(str(ROOT / "data_curation" / "swallowcode_exp3.yaml"), "--dry-run")
    assert r.returncode == 2 and "input.paths[0]: environment variable RAW_ROOT is not set" in r.stderr


@pytest.mark.parametrize("exp", [2, 3, 4])
def test_mixture_names_the_pipeline_of_its_code_source(exp):
    text = (ROOT / "data_mix" / f"swallowcode_exp{exp}.yaml").read_text()
    assert f"cptkit curate data_curation/swallowcode_exp{exp}.yaml" in text
