"""`cptkit merge`: task arithmetic / chat vector on tiny HF Llama folders, checked against a direct computation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cptkit.merge.task_arithmetic import MergeInput, merge, parse_model

REPO = Path(__file__).resolve().parents[2]


def tiny_llama(path: Path, seed: int, *, hidden: int = 32) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=300, hidden_size=hidden, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False,
    )  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(path, safe_serialization=True)
    (path / "tokenizer_config.json").write_text(json.dumps({"name": path.name}))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    return {name: tiny_llama(root / name, seed) for seed, name in enumerate(["base", "instruct", "cpt"])}


def weights(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def max_error(got: dict, want: dict) -> float:
    assert set(got) == set(want)
    return max((got[k].double() - want[k]).abs().max().item() for k in want)


@pytest.mark.parametrize("w_cpt,w_inst", [(1.0, 1.0), (0.5, 0.7)])
def test_chat_vector_equals_the_direct_computation(models, tmp_path, w_cpt, w_inst):
    b, i, c = (weights(models[n]) for n in ("base", "instruct", "cpt"))
    out = tmp_path / "merged"
    merge(
        out,
        base=models["base"],
        models=[MergeInput(models["cpt"], w_cpt), MergeInput(models["instruct"], w_inst)],
        log=lambda *_: None,
    )
    got = weights(out)
    # out = base + w_cpt (cpt - base) + w_inst (instruct - base); with 1 and 1: CPT + (Instruct - base).
    want = {k: b[k].double() + w_cpt * (c[k].double() - b[k].double()) + w_inst * (i[k].double() - b[k].double())
            for k in b}  # fmt: skip
    assert max_error(got, want) < 1e-6
    # The comparison is not blind: the vector taken against the wrong base (instruct) is far off.
    wrong = {k: c[k].double() + (b[k].double() - i[k].double()) for k in b}
    assert max_error(got, wrong) > 1e-2
    # Tokenizer from the first model (the CPT release), a record of the inputs, nothing half-written left around.
    assert json.loads((out / "tokenizer_config.json").read_text()) == {"name": "cpt"}
    record = json.loads((out / "cptkit_merge.json").read_text())
    assert [m["weight"] for m in record["models"]] == [w_cpt, w_inst] and record["base"] == str(models["base"])
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


def test_parse_model():
    assert parse_model("a/b=0.5") == MergeInput(Path("a/b"), 0.5)
    assert parse_model("a/b") == MergeInput(Path("a/b"), 1.0)
    assert parse_model("a/x=y") == MergeInput(Path("a/x=y"), 1.0)


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cptkit.cli", "merge", *args], capture_output=True, text=True, env=env, cwd=REPO,
        timeout=300,
    )  # fmt: skip


def test_cli_dry_run_and_bad_inputs(models, tmp_path):
    args = ["--base", str(models["base"]), "--model", f"{models['cpt']}=1", "--model", str(models["instruct"])]
    r = cli(str(tmp_path / "out"), *args, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "dry run" in r.stdout and "1 * (" in r.stdout and not (tmp_path / "out").exists()

    odd = tiny_llama(tmp_path / "odd", 3, hidden=48)  # another shape: no task vector exists
    r = cli(str(tmp_path / "out"), "--base", str(models["base"]), "--model", str(odd))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert str(odd) in r.stderr and "the base's is" in r.stderr and not (tmp_path / "out").exists()

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    r = cli(str(tmp_path / "full"), *args)
    assert r.returncode == 2 and "not empty" in r.stderr and (tmp_path / "full" / "x").read_text() == "keep"
