"""A non-editable install converts: the wheel carries the mapping specs (and every other data file), so a cluster that
`pip install`s cptkit needs no checkout (issue #13 point 5).

The wheel is built offline from a copy of the sources (`pip wheel --no-deps --no-build-isolation`), installed into a
fresh venv whose only link to the project's .venv is a `.pth` line naming .venv's site-packages (for torch,
megatron-core, transformers). That line adds the directory to sys.path without running the `.pth` files in it, so
the editable install of cptkit there stays inactive: `import cptkit` finds the wheel's copy or nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kw)
    assert r.returncode == 0, f"{argv}\n{r.stdout}\n{r.stderr}"
    return r


def tiny_llama(out: Path) -> Path:
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
        vocab_size=250, max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=500000.0,
    )  # fmt: skip
    transformers.LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    return out


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_converts_a_tiny_model(tmp_path):
    # 1. Build the wheel from a copy, so the checkout gets no build/ or egg-info.
    src = tmp_path / "src-copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip"]
    run([*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), "-q"])
    (wheel,) = dist.glob("cptkit-*.whl")

    # 2. A fresh venv that sees the dependencies but not the source tree, then the wheel into it.
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    Path(purelib, "_project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], env=env)

    work = tmp_path / "work"  # not the checkout: nothing relative to it may be needed
    work.mkdir()
    where = run([str(python), "-c", "import cptkit; print(cptkit.__file__)"], env=env, cwd=work).stdout.strip()
    assert where.startswith(purelib), where  # the wheel's copy, not the source tree
    # Not blind: the same interpreter without the wheel cannot import cptkit at all.
    bare = tmp_path / "bare"
    run([sys.executable, "-m", "venv", "--without-pip", str(bare)])
    bare_lib = run([str(bare / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    Path(bare_lib.stdout.strip(), "_project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    r = subprocess.run([str(bare / "bin/python"), "-c", "import cptkit"], capture_output=True, env=env, cwd=work)
    assert r.returncode != 0

    # 3. Convert with the installed console script; the spec comes from the wheel.
    hf = tiny_llama(tmp_path / "hf")
    out = tmp_path / "mcore"
    cptkit = str(venv / "bin" / "cptkit")
    run([cptkit, "convert", "hf-to-mcore", str(hf), str(out), "--dtype", "fp32"], env=env, cwd=work)
    cfg = json.loads((out / "cptkit_model.json").read_text())
    assert cfg["architecture"] == "llama" and cfg["num_layers"] == 2
    back = tmp_path / "hf-back"
    run([cptkit, "convert", "mcore-to-hf", str(out), str(back), "--dtype", "fp32"], env=env, cwd=work)

    from safetensors.torch import load_file

    a, b = load_file(hf / "model.safetensors"), load_file(next(back.glob("*.safetensors")))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)  # the round trip is exact
    # `cptkit --help` lists every stage: none failed to import from the wheel.
    assert "UNAVAILABLE" not in run([cptkit, "--help"], env=env, cwd=work).stdout
