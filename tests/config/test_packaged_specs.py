"""Mapping specs are package data; your own come from --spec FILE_OR_DIR or CPTKIT_CONVERT_SPECS directories."""

from __future__ import annotations

from pathlib import Path

import pytest

import cptkit
from cptkit.convert.spec import SPEC_DIR, load_specs
from cptkit.errors import UserError

REPO = Path(__file__).resolve().parents[2]
MINE = "name: {name}\nhf_architectures: [{arch}]\nconfig: {{}}\nweights: []\nlayer_weights: []\n"


def test_shipped_specs_live_in_the_package_and_convert_links_to_them():
    assert SPEC_DIR.is_relative_to(Path(cptkit.__file__).parent)
    shipped = sorted(p.name for p in SPEC_DIR.glob("*.yaml"))
    assert {"llama.yaml", "qwen2.yaml", "mistral.yaml"} <= set(shipped)
    for name in shipped:  # the top-level convert/ folder the design card lists shows the same files
        assert (REPO / "convert" / name).read_bytes() == (SPEC_DIR / name).read_bytes()


def test_user_spec_directories_add_and_replace(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "gpt.yaml").write_text(MINE.format(name="gpt", arch="MyGPT"))
    (site / "llama.yaml").write_text(MINE.format(name="llama", arch="MyLlama"))
    assert "gpt" not in load_specs()
    monkeypatch.setenv("CPTKIT_CONVERT_SPECS", str(site))
    specs = load_specs()
    assert specs["gpt"].hf_architectures == ("MyGPT",) and specs["llama"].hf_architectures == ("MyLlama",)
    assert "qwen2" in specs  # the shipped ones are still there
    monkeypatch.delenv("CPTKIT_CONVERT_SPECS")
    assert "gpt" in load_specs([site]) and load_specs()["llama"].hf_architectures == ("LlamaForCausalLM",)
    monkeypatch.setenv("CPTKIT_CONVERT_SPECS", str(tmp_path / "nope"))
    with pytest.raises(UserError, match=r"nope: not a directory \(set by CPTKIT_CONVERT_SPECS\)"):
        load_specs()
