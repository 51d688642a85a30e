"""The generated recipe reference (`cptkit train schema`): every key, its type, default, unit and rules.

The check that docs/recipe.md equals the generator's output is tests/train/test_recipe.py::test_recipe_doc_is_generated.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cptkit.errors import UserError
from cptkit.model.config import ModelConfig
from cptkit.train import schema
from cptkit.train.recipe import load_recipe
from cptkit.train.schema_doc import is_numeric, leaf_rows, markdown, sections, unit_of

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny_cpu.yaml"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cptkit.cli", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_a_changed_description_changes_the_reference(monkeypatch):
    before = markdown()
    monkeypatch.setattr(schema.TrainingSection.model_fields["seq_length"], "description", "changed")
    after = markdown()
    assert after != before and "| `training.seq_length` | integer > 0 | **required** | tokens | changed |" in after


def test_every_key_has_a_row_a_description_and_numbers_a_unit():
    text = markdown()
    rows = {line.split(" | ")[0].removeprefix("| ") for line in text.splitlines() if line.startswith("| `")}
    section_names = {p.rstrip(".") for p, model, _ in sections() if model.__module__ == schema.__name__ and p}
    leaves = schema.known_keys() - section_names
    assert len(leaves) > 50 and "model.config" in leaves
    missing = sorted(k for k in leaves if f"`{k}`" not in rows)
    assert not missing, missing
    assert {f"`model.config.{n}`" for n in ModelConfig.model_fields} <= rows
    for prefix, model, _ in sections():
        for key, info in leaf_rows(prefix, model):
            described = info.description or key.startswith("model.config.")  # ModelConfig: HF key names fill in
            assert described, f"{key} has no description in src/cptkit/train/schema.py"
            if is_numeric(info):
                assert unit_of(key) is not None, f"{key}: add its unit to UNITS in cptkit/train/schema_doc.py"
    # Not blind: a field the reference does not list is caught.
    assert "`training.new_key`" not in rows


def test_types_defaults_and_units_are_rendered():
    text = markdown()
    for row in (
        "| `training.train_tokens` | tokens or null | `null` | tokens |",
        "| `optimizer.adam_beta2` | number > 0 < 1 | `0.95` | — |",
        "| `schedule.lr_warmup_iters` | integer ≥ 0 or null | `null` | iterations |",
        "| `training.precision` | one of `bf16`, `fp16`, `fp32` | `bf16` | — |",
        "| `run_dir` | string | `runs/${name}` | — |",
        "| `checkpoint.save_on_signal` | boolean | `true` | — |",
        "| `training.global_batch_size` | integer > 0 | **required** | sequences |",
    ):
        assert row in text, row
    for title in ("### `data` (required section)", "### `logging` (optional section)", "### `model.config` ("):
        assert title in text, title


# Every validator in the schema, with an input it refuses and where the reference states the rule. A validator added
# without an entry here fails test_every_validator_is_listed, so the rules in the docs stay complete.
VALIDATORS = {
    "DataSection._split": (["data.split=990,10"], "three non-negative weights", "three non-negative weights"),
    "DataSection._eod": (
        ["data.eod_mask_loss=true"],
        "eod_token_id is required",
        "required when reset_position_ids, reset_attention_mask or eod_mask_loss is true",
    ),
    "TrainingSection._tokens": (["training.train_tokens=lots"], "training.train_tokens", "Token budget, > 0"),
    "TrainingSection._budget": (
        ["training.train_iters=null"],
        "give training.train_iters or training.train_tokens",
        "Give this or train_tokens",
    ),
    "OptimizerSection._lrs": (["optimizer.min_lr=1"], "is larger than lr", "at most lr"),
    "ScheduleSection._tokens": (["schedule.lr_warmup_tokens=x"], "schedule.lr_warmup_tokens", "as a token count"),
    "ReleaseSection._name": (
        ["release.name=no spaces{iteration}"],
        "gives names the Hub refuses",
        "The name must follow the Hub's rules",
    ),
    "ScheduleSection._one_warmup": (
        ["schedule.lr_warmup_tokens=1k"],
        "not both",
        "Give this or lr_warmup_tokens, not both",
    ),
}
MORE_RULES = [  # second branches of the validators above
    (["optimizer.overlap_param_gather=true", "optimizer.use_distributed_optimizer=false"], "needs use_distributed"),
    (["schedule.lr_decay_style=WSD"], "WSD needs lr_wsd_decay_iters"),
    (["training.train_iters=null", "training.train_tokens=0"], "train_tokens must be positive"),
]


def test_every_validator_is_listed():
    found = set()
    for _, model, _ in sections():
        if model.__module__ != schema.__name__:
            continue
        decorators = model.__pydantic_decorators__
        for name in (*decorators.field_validators, *decorators.model_validators):
            found.add(f"{model.__name__}.{name}")
    assert found == set(VALIDATORS)


@pytest.mark.parametrize("name", sorted(VALIDATORS))
def test_validator_rules_are_enforced_and_documented(name):
    overrides, error, doc = VALIDATORS[name]
    with pytest.raises(UserError) as e:
        load_recipe(TINY, overrides)
    assert error in e.value.one_line()
    assert doc in markdown(), f"{name}: the reference does not state {doc!r}"


@pytest.mark.parametrize("overrides,error", MORE_RULES)
def test_second_validator_branches(overrides, error):
    with pytest.raises(UserError, match=error):
        load_recipe(TINY, overrides)


def test_modelconfig_rules_are_documented():
    config = dict(load_recipe(TINY).model.config, num_query_groups=3)
    with pytest.raises(ValueError, match="must be divisible by num_query_groups"):
        ModelConfig.model_validate(config)
    assert "`num_attention_heads` must be divisible by `num_query_groups`" in markdown()


def test_every_shipped_recipe_is_in_the_reference():
    text = markdown()
    missing = [p.name for p in sorted((REPO / "recipes").glob("*.yaml")) if f"`{p.name}`" not in text]
    assert not missing, f"add to the shipped-recipes table in cptkit/train/schema_doc.py: {missing}"


def test_cli_train_schema_prints_and_writes_without_torch(tmp_path):
    r = cli("train", "schema")
    assert r.returncode == 0, r.stderr
    assert r.stdout == markdown()
    out = tmp_path / "recipe.md"
    r = cli("train", "schema", "-o", str(out), "--dry-run")
    assert r.returncode == 0 and not out.exists() and r.stdout == markdown()
    r = cli("train", "schema", "-o", str(out))
    assert r.returncode == 0 and out.read_text(encoding="utf-8") == markdown()
    r = cli("train", str(TINY), "-o", str(out))
    assert r.returncode == 2 and "only for `cptkit train schema`" in r.stderr
    code = (
        "import sys, io, contextlib\n"
        "from cptkit.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['train', 'schema']) == 0\n"
        "bad = sorted(m for m in ('torch', 'megatron', 'transformers') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
