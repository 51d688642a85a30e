"""Issue #12 point 7a, as a user meets it: a typo under `model.config` (in the recipe file or as a key=value override)
used to be accepted and silently ignored; now `cptkit plan` and `cptkit train --dry-run` refuse it in one line, exit 2,
naming the file and the key with the correction. (The loader itself: tests/config/test_loaders.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny_cpu.yaml"


def cptkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cptkit.cli", *args], capture_output=True, text=True, cwd=REPO)


@pytest.mark.parametrize("command", [("plan",), ("train", "--dry-run")])
def test_model_config_typo_in_the_file_is_refused(tmp_path, command):
    text = TINY.read_text(encoding="utf-8")
    assert "    num_layers:" in text  # not blind: the key really is there to misspell
    (tmp_path / "r.yaml").write_text(text.replace("    num_layers:", "    num_layer:", 1), encoding="utf-8")
    done = cptkit(*command, str(tmp_path / "r.yaml"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"{tmp_path}/r.yaml: model.config.num_layer: unknown key; did you mean 'model.config.num_layers'?" in (
        done.stderr
    )


def test_model_config_typo_on_the_command_line_is_refused_and_the_right_key_passes():
    bad = cptkit("plan", str(TINY), "model.config.hiden_size=64")
    assert bad.returncode == 2
    assert "command line: model.config.hiden_size: unknown key; did you mean 'model.config.hidden_size'?" in bad.stderr
    good = cptkit("plan", str(TINY), "model.config.hidden_size=64")  # the same override, spelled right
    assert good.returncode == 0, good.stderr


@pytest.mark.parametrize("command", [("plan",), ("train", "--dry-run")])
def test_model_config_that_contradicts_the_initial_checkpoint_is_refused(tmp_path, command):
    """`plan` and the trainer share one check of `model.config` against the initial checkpoint's cptkit_model.json:
    a contradicting value is refused naming the recipe key; the same value written another way (5e5 vs 500000) is
    not a contradiction."""
    import yaml

    from cptkit.model.config import ModelConfig

    inline = yaml.safe_load(TINY.read_text(encoding="utf-8"))["model"]["config"]
    ckpt = tmp_path / "init"
    ModelConfig.model_validate(inline).save(ckpt)
    base = TINY.read_text(encoding="utf-8").replace("init_checkpoint: null", f"init_checkpoint: {ckpt}", 1)
    assert f"init_checkpoint: {ckpt}" in base
    same = base.replace("rotary_base: 500000", "rotary_base: 5.0e+5", 1)
    assert same != base
    (tmp_path / "same.yaml").write_text(same, encoding="utf-8")
    ok = cptkit(*command, str(tmp_path / "same.yaml"))
    assert "model.config" not in ok.stderr, ok.stderr
    (tmp_path / "r.yaml").write_text(base.replace("num_layers: 2", "num_layers: 3", 1), encoding="utf-8")
    done = cptkit(*command, str(tmp_path / "r.yaml"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"{tmp_path}/r.yaml: model.config.num_layers: recipe says 3 but " in done.stderr
    assert f"{ckpt}/cptkit_model.json has 2" in done.stderr


def test_the_trainer_applies_the_same_check(tmp_path):
    import yaml

    from cptkit.errors import UserError
    from cptkit.model.config import ModelConfig
    from cptkit.train.recipe import load_recipe
    from cptkit.train.setup import model_config_for

    inline = yaml.safe_load(TINY.read_text(encoding="utf-8"))["model"]["config"]
    ckpt = tmp_path / "init"
    ModelConfig.model_validate(inline).save(ckpt)
    base = TINY.read_text(encoding="utf-8").replace("init_checkpoint: null", f"init_checkpoint: {ckpt}", 1)
    (tmp_path / "ok.yaml").write_text(base, encoding="utf-8")
    assert model_config_for(load_recipe(tmp_path / "ok.yaml", [])).num_layers == 2
    (tmp_path / "r.yaml").write_text(base.replace("hidden_size: 64", "hidden_size: 96", 1), encoding="utf-8")
    with pytest.raises(UserError, match=r"recipe says 96 but .*cptkit_model.json has 64") as e:
        model_config_for(load_recipe(tmp_path / "r.yaml", []))
    assert e.value.field == "model.config.hidden_size"
