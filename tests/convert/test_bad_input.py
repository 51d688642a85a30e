"""Bad input is caught before anything is written, as one line naming the file (exit 2); partial output never
looks complete."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from convhelp import make_hf_model
from safetensors.torch import load_file, save_file

from cptkit.cli import main
from cptkit.convert import hf_to_mcore, mcore_to_hf
from cptkit.convert.hf_to_mcore import convert_hf_to_mcore
from cptkit.convert.mcore_to_hf import convert_mcore_to_hf


def quiet(*_):
    pass


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()  # drop what making the model printed
    rc = main(["convert", *argv])
    err = capsys.readouterr().err
    return rc, err


def edit_config(hf: Path, **changes) -> None:
    config = json.loads((hf / "config.json").read_text())
    config.update(changes)
    (hf / "config.json").write_text(json.dumps(config))


def shard(hf: Path, max_shard_size: str) -> Path:
    """Re-save `hf` as several shards + index."""
    from transformers import AutoModelForCausalLM

    out = hf.parent / "sharded"
    AutoModelForCausalLM.from_pretrained(hf).save_pretrained(out, max_shard_size=max_shard_size)
    return out


def nothing_written(out: Path) -> bool:
    return not out.exists() and not list(out.parent.glob(f".{out.name}.partial-*"))


def case_unsupported_architecture(hf):
    edit_config(hf, architectures=["GPTNeoXForCausalLM"], model_type="gpt_neox")
    return "unsupported architecture"


def case_config_weights_disagree(hf):
    edit_config(hf, intermediate_size=256)
    return "config and weights disagree"


def case_extra_layer_in_weights(hf):
    edit_config(hf, num_hidden_layers=1)
    return "unexpected tensor"


def case_missing_tensor(hf):
    tensors = load_file(hf / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, hf / "model.safetensors", metadata={"format": "pt"})
    return "lack tensor model.layers.1.mlp.up_proj.weight"


def case_truncated_weights(hf):
    data = (hf / "model.safetensors").read_bytes()
    (hf / "model.safetensors").write_bytes(data[: len(data) // 2])
    return "truncated"


def case_pytorch_bin_only(hf):
    (hf / "model.safetensors").rename(hf / "pytorch_model.bin")
    return "safe_serialization"


def case_rope_type(hf):
    edit_config(hf, rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0})
    return "unsupported RoPE scaling type 'yarn'"


@pytest.mark.parametrize(
    "case",
    [
        case_unsupported_architecture,
        case_config_weights_disagree,
        case_extra_layer_in_weights,
        case_missing_tensor,
        case_truncated_weights,
        case_pytorch_bin_only,
        case_rope_type,
    ],
)
def test_hf_to_mcore_refuses_bad_input_before_writing(tmp_path, capsys, case):
    hf = make_hf_model(tmp_path / "hf")
    expected = case(hf)
    out = tmp_path / "out"
    rc, err = run_cli(capsys, "hf-to-mcore", str(hf), str(out))
    assert rc == 2 and expected in err and str(hf) in err
    assert err.count("\n") == 1  # one line, no traceback
    assert nothing_written(out)


def test_missing_shard(tmp_path, capsys):
    hf = shard(make_hf_model(tmp_path / "hf"), "100KB")
    victim = sorted(hf.glob("model-*.safetensors"))[1]
    victim.unlink()
    rc, err = run_cli(capsys, "hf-to-mcore", str(hf), str(tmp_path / "out"))
    assert rc == 2 and "missing" in err and victim.name in err and "model.safetensors.index.json" in err
    assert nothing_written(tmp_path / "out")


@pytest.mark.parametrize(
    ("tp", "what"),
    [(3, "num_attention_heads=4"), (4, "num_query_groups (KV heads)=2"), (8, "num_attention_heads=4")],
)
def test_tp_must_divide_heads_kv_heads_and_ffn(tmp_path, capsys, tp, what):
    hf = make_hf_model(tmp_path / "hf")
    rc, err = run_cli(capsys, "hf-to-mcore", str(hf), str(tmp_path / "out"), "--tp", str(tp))
    assert rc == 2 and f"TP={tp} does not divide" in err and what in err
    assert nothing_written(tmp_path / "out")


def test_ffn_not_divisible(tmp_path, capsys):
    hf = make_hf_model(tmp_path / "hf")
    edit_config(hf, intermediate_size=129)  # checked against TP before the weights are even opened
    rc, err = run_cli(capsys, "hf-to-mcore", str(hf), str(tmp_path / "out"), "--tp", "2")
    assert rc == 2 and "ffn_hidden_size=129" in err


def test_existing_output_is_never_overwritten(tmp_path, capsys):
    hf = make_hf_model(tmp_path / "hf")
    (tmp_path / "out").mkdir()
    (tmp_path / "out/keep.txt").write_text("mine")
    rc, err = run_cli(capsys, "hf-to-mcore", str(hf), str(tmp_path / "out"))
    assert rc == 2 and "not empty" in err and (tmp_path / "out/keep.txt").read_text() == "mine"


def test_crash_mid_write_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    hf = make_hf_model(tmp_path / "hf")
    calls = [0]
    real = hf_to_mcore.read_tensor

    def dying(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 10:
            raise OSError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(hf_to_mcore, "read_tensor", dying)
    with pytest.raises(OSError, match="disk on fire"):
        convert_hf_to_mcore(hf, tmp_path / "mc", log=quiet)
    assert calls[0] >= 10 and nothing_written(tmp_path / "mc")

    monkeypatch.undo()
    convert_hf_to_mcore(hf, tmp_path / "mc", log=quiet)
    real_write = mcore_to_hf.ShardedWriter.write

    def dying_write(self, name, tensor):
        if name.startswith("model.layers.1."):
            raise OSError("disk full")
        return real_write(self, name, tensor)

    monkeypatch.setattr(mcore_to_hf.ShardedWriter, "write", dying_write)
    with pytest.raises(OSError, match="disk full"):
        convert_mcore_to_hf(tmp_path / "mc", tmp_path / "release", log=quiet)
    assert nothing_written(tmp_path / "release")


def test_mcore_to_hf_bad_input(tmp_path, capsys):
    hf = make_hf_model(tmp_path / "hf")
    convert_hf_to_mcore(hf, tmp_path / "mc", log=quiet)
    out = str(tmp_path / "out")

    rc, err = run_cli(capsys, "mcore-to-hf", str(hf), out)  # an HF dir is not a checkpoint
    assert rc == 2 and "cptkit_model.json" in err

    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "mc", bad)
    config = json.loads((bad / "cptkit_model.json").read_text())
    (bad / "cptkit_model.json").write_text(json.dumps(config | {"ffn_hidden_size": 96}))
    rc, err = run_cli(capsys, "mcore-to-hf", str(bad), out)
    assert rc == 2 and "disagree" in err and "linear_fc1" in err

    (bad / "cptkit_model.json").write_text(json.dumps(config | {"architecture": "gpt2"}))
    rc, err = run_cli(capsys, "mcore-to-hf", str(bad), out)
    assert rc == 2 and "no mapping spec 'gpt2'" in err

    (bad / "cptkit_model.json").write_text(json.dumps(config))
    next(bad.glob("*.distcp")).unlink()
    rc, err = run_cli(capsys, "mcore-to-hf", str(bad), out)
    assert rc == 2 and "missing" in err

    rc, err = run_cli(capsys, "mcore-to-hf", str(tmp_path / "mc"), out, "--iteration", "5")
    assert rc == 2 and "--iteration" in err
    assert nothing_written(Path(out))


def test_dry_runs_write_nothing(tmp_path, capsys):
    hf = make_hf_model(tmp_path / "hf")
    assert main(["convert", "hf-to-mcore", str(hf), str(tmp_path / "mc"), "--dry-run", "--tp", "2"]) == 0
    printed = capsys.readouterr().out
    assert "rope_scaling" in printed and "padded_vocab_size: 256" in printed
    assert nothing_written(tmp_path / "mc")
    convert_hf_to_mcore(hf, tmp_path / "mc", log=quiet)
    assert main(["convert", "mcore-to-hf", str(tmp_path / "mc"), str(tmp_path / "out"), "--dry-run"]) == 0
    assert "256 -> 250 rows" in capsys.readouterr().out and nothing_written(tmp_path / "out")
    assert main(["convert", "verify", str(hf), str(tmp_path / "mc"), "--dry-run", "--tp", "2"]) == 0
    rc, err = run_cli(capsys, "verify", str(hf), str(tmp_path / "mc"), "--tp", "4")
    assert rc == 2 and "does not divide" in err
    assert torch.__version__  # keeps the import used when collection-only
