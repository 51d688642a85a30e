"""Logits of the converted megatron-core model match HF in fp32 within 1e-4 at TP=1 and TP=2 (gloo, spawned
processes); deliberately broken mappings exceed that tolerance in the same test, so the check is not blind; a
checkpoint re-saved by megatron-core itself at TP=2 (as the trainer saves) has exactly the converter's TP=2 chunk
layout and exports back to HF bit-exact."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from convhelp import SEQ_LEN, make_hf_model
from test_roundtrip import assert_bit_exact, load_dir

from cptkit.cli import main
from cptkit.convert import layout
from cptkit.convert.hf_to_mcore import convert_hf_to_mcore
from cptkit.convert.mcore_io import CheckpointReader
from cptkit.convert.mcore_to_hf import convert_mcore_to_hf
from cptkit.convert.spec import SPEC_DIR
from cptkit.convert.verify import compare_logits, hf_logits, mcore_logits, sample_tokens
from cptkit.model.config import ModelConfig

TOLERANCE = 1e-4
pytestmark = pytest.mark.filterwarnings("ignore")


def quiet(*_):
    pass


def broken_variants(hf: Path, work: Path, arch: str, monkeypatch) -> dict[str, Path]:
    """Checkpoints converted with one deliberate mapping error each."""
    out = {}
    if arch == "llama":  # Llama-3.1 RoPE scaling dropped (the bug several converters had)
        out["rope scaling dropped"] = work / "no-rope-scaling"
        convert_hf_to_mcore(hf, out["rope scaling dropped"], log=quiet)
        cfg = ModelConfig.load(out["rope scaling dropped"])
        cfg.rope_scaling = None
        cfg.save(out["rope scaling dropped"])

    real_fuse = layout.fuse_qkv

    def misordered(q, k, v, groups):  # KV groups in reverse order
        fused = real_fuse(q, k, v, groups)
        return fused.reshape(groups, -1, *fused.shape[1:]).flip(0).reshape(fused.shape)

    monkeypatch.setattr(layout, "fuse_qkv", misordered)
    out["KV groups misordered"] = work / "kv-misordered"
    convert_hf_to_mcore(hf, out["KV groups misordered"], log=quiet)
    monkeypatch.undo()

    # gate/up swapped: a spec whose fc1 lists up_proj before gate_proj
    text = (SPEC_DIR / f"{arch}.yaml").read_text()
    gate, up = "model.layers.{i}.mlp.gate_proj.weight", "model.layers.{i}.mlp.up_proj.weight"
    swapped = text.replace(gate, "@@").replace(up, gate).replace("@@", up)
    assert swapped != text
    (work / "swapped.yaml").write_text(swapped)
    out["gate/up swapped"] = work / "gate-up-swapped"
    convert_hf_to_mcore(hf, out["gate/up swapped"], extra_specs=[work / "swapped.yaml"], log=quiet)
    return out


def chunk_layout(ckpt: Path) -> dict[str, set]:
    md = CheckpointReader(ckpt).metadata.state_dict_metadata
    return {k: {(tuple(c.offsets), tuple(c.sizes)) for c in v.chunks} for k, v in md.items() if hasattr(v, "chunks")}


@pytest.mark.slow  # spawned TP ranks per broken mapping: ~90 s for both on 2 cores (make test-slow; CI runs it)
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_logits_match_hf_at_tp1_and_tp2_and_broken_mappings_do_not(tmp_path, monkeypatch, arch):
    hf = make_hf_model(tmp_path / "hf", arch)
    convert_hf_to_mcore(hf, tmp_path / "mc", log=quiet)
    convert_hf_to_mcore(hf, tmp_path / "mc-tp2-layout", tp=2, log=quiet)
    broken = broken_variants(hf, tmp_path, arch, monkeypatch)

    tokens = sample_tokens(250, 2, SEQ_LEN, seed=0)
    reference = hf_logits(hf, tokens)
    assert reference.std() > 1.0  # weights large enough that logits are far from uniform

    # TP=1: the converted checkpoint in both layouts, and every broken one, in one spawned process.
    good1, good1_tp2_layout, *bad = mcore_logits(
        [tmp_path / "mc", tmp_path / "mc-tp2-layout", *broken.values()], tokens
    )
    for logits in (good1, good1_tp2_layout):
        result = compare_logits(reference, logits, TOLERANCE)
        assert result.ok and result.top1_agreement == 1.0, result.summary()
    for name, logits in zip(broken, bad, strict=True):
        result = compare_logits(reference, logits, TOLERANCE)
        assert result.max_abs_diff > 100 * TOLERANCE, f"{name} went unnoticed: {result.summary()}"

    # TP=2 (two gloo processes, dist_checkpointing reshards the TP=1 layout), re-saved as the trainer would.
    run = tmp_path / "run"
    (good2,) = mcore_logits([tmp_path / "mc"], tokens, tp=2, resave_dir=run / "checkpoints/iter_0000007")
    result = compare_logits(reference, good2, TOLERANCE)
    assert result.ok and result.top1_agreement == 1.0, result.summary()

    # megatron-core's own TP=2 save has the converter's TP=2 chunking (incl. the SwiGLU fc1 factory's [gate; up]).
    trainer_layout = chunk_layout(run / "checkpoints/iter_0000007")
    converter_layout = chunk_layout(tmp_path / "mc-tp2-layout")
    assert trainer_layout == converter_layout
    fc1 = trainer_layout["decoder.layers.mlp.linear_fc1.weight"]
    assert ((0, 64, 0), (1, 64, 64)) in fc1 and ((0, 128, 0), (1, 64, 64)) in fc1  # gate rank 1, up rank 0

    # ... and exports from the RUN_DIR (latest iteration) back to the original weights bit for bit.
    (run / "checkpoints/latest_checkpointed_iteration.txt").write_text("7\n")
    shutil.copytree(tmp_path / "mc/hf_assets", run / "checkpoints/iter_0000007/hf_assets")
    convert_mcore_to_hf(run, tmp_path / "release", dtype=torch.float32, log=quiet)
    assert_bit_exact(load_dir(hf), load_dir(tmp_path / "release"))


def test_verify_cli(tmp_path, capsys):
    hf = make_hf_model(tmp_path / "hf", "qwen2", tied=True)
    convert_hf_to_mcore(hf, tmp_path / "mc", tp=2, log=quiet)
    capsys.readouterr()
    # A TP=2-layout checkpoint of a tied Qwen2, verified at TP=1 through the CLI (TP=2 runs above).
    rc = main(["convert", "verify", str(hf), str(tmp_path / "mc"), "--seq-len", "64", "--json"])
    out = capsys.readouterr().out
    assert rc == 0 and "OK: max |dlogit|" in out and '"ok": true' in out


def _trainer_load_then_pp2_resave(rank: int, world: int, ckpt: str, tokens: torch.Tensor, out: str):
    """Two ranks: `cptkit train`'s own model-only loader at TP=2 (returns logits), then the same checkpoint loaded into
    a PP=2 model (one layer per stage) and saved again, as a PP=2 run would."""
    from megatron.core import dist_checkpointing

    from cptkit.backend.dist import initialize_model_parallel
    from cptkit.convert.spec import load_specs
    from cptkit.convert.verify import canonical_sharded_state_dict
    from cptkit.model.build import build_gpt_model, forward_logits, transformer_config
    from cptkit.train.checkpoint import load_checkpoint

    cfg = ModelConfig.load(ckpt)
    initialize_model_parallel(tp=world)
    model = build_gpt_model(cfg, transformer_config(cfg, tensor_model_parallel_size=world))
    load_checkpoint(ckpt, model=model)
    logits = forward_logits(model, tokens, vocab_size=cfg.vocab_size)

    initialize_model_parallel(tp=1, pp=world)
    spec = load_specs()[cfg.architecture]
    model = build_gpt_model(cfg, transformer_config(cfg, pipeline_model_parallel_size=world))
    state = dist_checkpointing.load({"model": canonical_sharded_state_dict(model, None, spec)}, ckpt)
    model.load_state_dict(state["model"], strict=False)
    Path(out).mkdir(parents=True, exist_ok=True)
    dist_checkpointing.save({"model": canonical_sharded_state_dict(model, None, spec)}, out)
    if rank == 0:
        cfg.save(out)
    return (logits.numpy() if rank == 0 else None), len(model.decoder.layers)


@pytest.mark.slow  # spawned ranks / a killed and resumed run: 25-45 s on 2 cores (make test-slow; CI runs it)
def test_trainer_loader_at_tp2_and_pp2_saved_checkpoint_exports_bit_exact(tmp_path):
    from cptkit.backend.spawn import run_spawned

    hf = make_hf_model(tmp_path / "hf")
    convert_hf_to_mcore(hf, tmp_path / "mc", log=quiet)  # TP=1 layout, loaded at TP=2 by the trainer's loader
    tokens = sample_tokens(250, 1, 128, seed=1)
    (logits, layers0), (_, layers1) = run_spawned(
        _trainer_load_then_pp2_resave, 2, str(tmp_path / "mc"), tokens, str(tmp_path / "pp2")
    )
    result = compare_logits(hf_logits(hf, tokens), torch.from_numpy(logits), TOLERANCE)
    assert result.ok and result.top1_agreement == 1.0, result.summary()
    assert (layers0, layers1) == (1, 1)
    convert_mcore_to_hf(tmp_path / "pp2", tmp_path / "out", dtype=torch.float32, hf_assets=hf, log=quiet)
    assert_bit_exact(load_dir(hf), load_dir(tmp_path / "out"))


@pytest.mark.slow  # two exports with logit checks in spawned processes: over a minute on 2 cores
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_a_model_trained_from_random_init_exports_its_rope(tmp_path, arch):
    """A run from random init has no base config.json (`hf_config` empty): the export must still name its RoPE base
    and Llama-3 scaling, or transformers loads base 10,000 without scaling and the release is another model. The
    export's own logit check passes, and the same release with its RoPE keys dropped fails that check."""
    import json

    from cptkit.model.integrity import checkpoint_files, hash_files, write_manifest

    hf = make_hf_model(tmp_path / "hf", arch)
    mc = tmp_path / "mc"
    convert_hf_to_mcore(hf, mc, log=quiet)
    cfg = ModelConfig.load(mc)
    assert cfg.hf_config  # not blind: the provenance is there before we drop it
    cfg.model_copy(update={"hf_config": {}}).save(mc)
    write_manifest(mc, hash_files(mc, checkpoint_files(mc)), None)

    out = tmp_path / "release"
    convert_mcore_to_hf(mc, out, dtype=torch.float32, verify=True, verify_tolerance=1e-4, log=quiet)
    written = json.loads((out / "config.json").read_text())
    assert written["rope_theta"] == cfg.rotary_base
    assert (written.get("rope_scaling") or None) == (cfg.rope_scaling.model_dump() if cfg.rope_scaling else None)

    for key in ("rope_theta", "rope_scaling"):  # what the export wrote before the fix
        written.pop(key, None)
    (out / "config.json").write_text(json.dumps(written))
    rc = main(["convert", "verify", str(out), str(mc), "--seq-len", "64", "--tolerance", "1e-4"])
    assert rc != 0
