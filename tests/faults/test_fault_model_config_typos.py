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
