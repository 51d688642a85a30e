"""Every config file type loads through `cptkit.config`, so a typo gets the same one-line answer everywhere:
`FILE: FIELD: unknown key; did you mean 'KEY'?` (exit 2 from the CLI), and `inherit:` works in all of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cptkit.cli import main
from cptkit.convert.spec import SPEC_DIR, load_spec
from cptkit.errors import UserError
from cptkit.eval.suites import load_suite, suites_dir
from cptkit.launch.profile import load_profile
from cptkit.mix.schema import load_mixture
from cptkit.model.config import ModelConfig
from cptkit.train.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny_cpu.yaml"


def tiny_model() -> dict:
    return dict(
        architecture="llama", num_layers=2, hidden_size=64, ffn_hidden_size=128, num_attention_heads=4,
        num_query_groups=2, kv_channels=16, vocab_size=250, padded_vocab_size=256, max_position_embeddings=256,
        rotary_base=500000.0, norm_epsilon=1e-5,
    )  # fmt: skip


def one_line(call) -> str:
    with pytest.raises(UserError) as e:
        call()
    line = e.value.one_line()
    assert "\n" not in line
    return line


def typo(src: str, old: str, new: str) -> str:
    assert old in src, old  # not blind: the replaced text is really there
    return src.replace(old, new, 1)


# (loader, shipped file to copy, text to misspell, the misspelling, the field named, the suggestion)
CASES = [
    (load_recipe, TINY, "  train_iters: 30", "  train_iter: 30", "training.train_iter", "'training.train_iters'"),
    (load_mixture, REPO / "data_mix/demo.yaml", "total_tokens:", "total_token:", "total_token", "'total_tokens'"),
    (load_profile, REPO / "launch/local.yaml", "cpus_per_node:", "cpu_per_node:", "cpu_per_node", "'cpus_per_node'"),
    (load_profile, REPO / "launch/local.yaml", "  master_port:", "  master_prt:", "launcher.master_prt",
     "'launcher.master_port'"),
    (load_spec, SPEC_DIR / "llama.yaml", "hf_model_types:", "hf_model_type:", "hf_model_type", "'hf_model_types'"),
    (load_spec, SPEC_DIR / "llama.yaml", "    hf: model.layers.{i}.input_layernorm.weight",
     "    hff: model.layers.{i}.input_layernorm.weight", "layer_weights[0].hff", "'hf'"),
    (load_suite, suites_dir() / "quick.yaml", "    shots: 0\n", "    shot: 0\n", "tasks[1].shot", "'shots'"),
]  # fmt: skip


@pytest.mark.parametrize(("load", "src", "old", "new", "field", "hint"), CASES)
def test_each_loader_names_file_and_field_and_suggests(tmp_path, load, src, old, new, field, hint):
    path = tmp_path / src.name
    path.write_text(typo(src.read_text(encoding="utf-8"), old, new), encoding="utf-8")
    assert one_line(lambda: load(str(path))) == f"{path}: {field}: unknown key; did you mean {hint}?"
    path.write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
    load(str(path))  # the unchanged copy loads: the error above is the typo's


def test_model_config_json_suggests(tmp_path):
    (tmp_path / "cptkit_model.json").write_text(json.dumps({**tiny_model(), "num_layer": 2}))
    line = one_line(lambda: ModelConfig.load(tmp_path))
    assert line == f"{tmp_path}/cptkit_model.json: num_layer: unknown key; did you mean 'num_layers'?"
    (tmp_path / "cptkit_model.json").write_text(json.dumps({**tiny_model(), "hf_config": {"x": "$${A}"}}))
    assert ModelConfig.load(tmp_path).hf_config == {"x": "$${A}"}  # data cptkit wrote is not ${VAR}-expanded


def test_model_config_typos_in_a_recipe_and_on_the_command_line(tmp_path):
    """#12 point 7a: `model.config.*` keys are ModelConfig's; a typo is refused like any other key."""
    text = typo(TINY.read_text(encoding="utf-8"), "    num_layers:", "    num_layer:")
    (tmp_path / "r.yaml").write_text(text, encoding="utf-8")
    assert one_line(lambda: load_recipe(tmp_path / "r.yaml")) == (
        f"{tmp_path}/r.yaml: model.config.num_layer: unknown key; did you mean 'model.config.num_layers'?"
    )
    assert one_line(lambda: load_recipe(TINY, ["model.config.hiden_size=32"])) == (
        "command line: model.config.hiden_size: unknown key; did you mean 'model.config.hidden_size'?"
    )
    assert "model.config.rope_scaling.factr: unknown key; did you mean 'model.config.rope_scaling.factor'" in (
        one_line(lambda: load_recipe(TINY, ["model.config.rope_scaling.factr=8"]))
    )
    # Correct keys still pass, and model.config stays a plain mapping (values are checked against the checkpoint).
    r = load_recipe(TINY, ["model.config.num_layers=4", "model.config.rope_scaling.factor=8"])
    assert r.model.config["num_layers"] == 4 and r.model.config["rope_scaling"]["factor"] == 8


def test_recipe_defaults_expand_name(tmp_path):
    text = "\n".join(line for line in TINY.read_text().splitlines() if not line.startswith("run_dir:"))
    (tmp_path / "nodir.yaml").write_text(text + "\n")
    assert load_recipe(tmp_path / "nodir.yaml").run_dir == "runs/tiny_cpu"


def test_inherit_works_for_a_profile_and_a_mixture(tmp_path):
    (tmp_path / "p.yaml").write_text(f"inherit: {REPO}/launch/local.yaml\nname: mine\ncpus_per_node: 4\n")
    p = load_profile(tmp_path / "p.yaml")
    assert (p.name, p.cpus_per_node, p.launcher.kind) == ("mine", 4, "torchrun")
    (tmp_path / "m.yaml").write_text(f"inherit: {REPO}/data_mix/demo.yaml\nname: demo2\n")
    assert load_mixture(tmp_path / "m.yaml").name == "demo2"


@pytest.mark.parametrize(
    ("argv", "name", "expected"),
    [
        (
            ["plan", "{f}"],
            "tiny_cpu.yaml",
            "{f}: training.train_iter: unknown key; did you mean 'training.train_iters'?",
        ),
        (["mix", "show", "{f}"], "demo.yaml", "{f}: total_token: unknown key; did you mean 'total_tokens'?"),
    ],
)
def test_cli_prints_the_same_line_with_exit_2(tmp_path, capsys, argv, name, expected):
    src = {"tiny_cpu.yaml": TINY, "demo.yaml": REPO / "data_mix/demo.yaml"}[name]
    old, new = (
        ("  train_iters: 30", "  train_iter: 30") if name == "tiny_cpu.yaml" else ("total_tokens:", "total_token:")
    )
    path = tmp_path / name
    path.write_text(typo(src.read_text(), old, new))
    assert main([a.format(f=path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.endswith(expected.format(f=path) + "\n") and len(err.splitlines()) == 1, err
