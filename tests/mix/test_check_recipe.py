"""`mix check` and `cptkit train` build their datasets with one builder (`cptkit.train.data.build_blend`), so
`mix check --recipe` measures the samples the trainer reads."""

from __future__ import annotations

import pytest
import torch

from cptkit.mix import resolve_file
from cptkit.mix.check import check_blend, check_recipe
from cptkit.train import data as train_data
from cptkit.train.recipe import load_recipe

from .conftest import REPO, make_prefix, run_cli, write_yaml


@pytest.fixture
def recipe(tmp_path, data_root):
    make_prefix(data_root / "a_text_document", [97] * 400, seed=1)
    make_prefix(data_root / "b_text_document", [131] * 300, seed=2)
    mix = write_yaml(
        tmp_path / "two.yaml",
        """
        name: two
        tokenizer: ${DATA_ROOT}/tokenizer.json  # the 1000-id vocabulary of make_prefix data
        sources:
          - {name: a, tokens: 30k, prefix: "${DATA_ROOT}/a_text_document"}
          - {name: b, tokens: 10k, prefix: "${DATA_ROOT}/b_text_document"}
        """,
    )
    return write_yaml(
        tmp_path / "r.yaml",
        f"""
        inherit: {REPO}/recipes/tiny_cpu.yaml
        name: r
        run_dir: {tmp_path}/run
        data: {{mixture: {mix}, split: "900,100,0", eod_token_id: 0}}
        training: {{seq_length: 32, global_batch_size: 8, train_iters: 20, seed: 77}}
        """,
    )


def test_check_and_trainer_read_the_same_samples(recipe, tmp_path, monkeypatch):
    built = {}
    real = train_data.build_blend

    def record(blend, spec, sizes, *, cache_dir=None, link_dir=None):
        name = "check" if link_dir else "train"
        (tmp_path / name).mkdir()  # the trainer's cache dir needs a process group: build both without one here
        built[name] = (spec, sizes, real(blend, spec, sizes, link_dir=str(tmp_path / name)))
        return built[name][2]

    monkeypatch.setattr(train_data, "build_blend", record)
    r = load_recipe(recipe)
    blend = resolve_file(r.data.mixture)
    train_data.build_datasets(r, blend, vocab_size=1000, train_iters=20, cache_dir=str(tmp_path / "cache"))
    result = check_recipe(recipe)
    assert result.samples == 20 * 8 and result.seq_length == 32

    (spec_t, sizes_t, (train, _, _)), (spec_c, sizes_c, (checked, _, _)) = built["train"], built["check"]
    assert (spec_c.seed, spec_c.seq_length, spec_c.split, spec_c.eod_id) == (77, 32, "900,100,0", 0)
    assert (spec_t.seed, spec_t.seq_length, spec_t.split) == (spec_c.seed, spec_c.seq_length, spec_c.split)
    assert sizes_c[0] == sizes_t[0] == 160
    for i in range(160):
        assert torch.equal(train[i]["tokens"], checked[i]["tokens"]), i

    # Not blind: the mixture alone, checked with mix check's own default split (all documents to training), draws
    # other samples than the trainer's 90/10 split does.
    monkeypatch.setattr(train_data, "build_blend", real)
    differ = []

    def keep(blend, spec, sizes, **kw):
        out = real(blend, spec, sizes, **kw)
        differ.append(any(not torch.equal(train[i]["tokens"], out[0][i]["tokens"]) for i in range(160)))
        return out

    monkeypatch.setattr(train_data, "build_blend", keep)
    check_blend(blend, samples=160, seq_length=32, seed=77, eod_id=0)
    assert differ == [True]


def test_cli_check_recipe(recipe):
    r = run_cli("mix", "check", "--recipe", str(recipe), "--json")
    assert r.returncode == 0, r.stderr
    assert '"samples": 160' in r.stdout
    r = run_cli("mix", "check", "--recipe", str(recipe), "--dry-run")
    assert r.returncode == 0 and "split 900,100,0" in r.stdout, r.stderr
    r = run_cli("mix", "check", "--recipe", str(recipe), "--seq-length", "8")
    assert r.returncode == 2 and "give neither" in r.stderr
    r = run_cli("mix", "check")
    assert r.returncode == 2 and "--recipe RECIPE" in r.stderr
