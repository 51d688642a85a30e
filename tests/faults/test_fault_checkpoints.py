"""Issue #12, faults 2 and 6, reproduced on real `cptkit train` checkpoints and shown fixed:

- fault 2: bytes overwritten inside a `.distcp` file of the latest checkpoint. Before: training resumed from it and
  `convert mcore-to-hf` wrote a release with 1,024 inf values. Now every save records sha256 checksums; resume, convert,
  eval and `cptkit status --verify` name the damaged file; the run falls back to the previous checkpoint only when told
  (`--resume-from`); export refuses non-finite weights.
- fault 6: `cptkit convert verify HF RUN/checkpoints/iter_N` failed on every training checkpoint (missing key
  `..._extra_state/shard_0_2`). Now it verifies a run's checkpoint, and `mcore-to-hf` runs it on its own export.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import VOCAB, make_hf_llama, write_mixture, write_prefix, write_recipe

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.slow]  # real training runs in subprocesses


def cptkit(*args: str, timeout: float = 600) -> tuple[int, str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "cptkit.cli", *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory) -> dict[str, Path]:
    """A tiny run that saved iterations 2, 4, 6 (all kept), started from a converted HF model."""
    root = tmp_path_factory.mktemp("faults_ckpt")
    prefixes = {"code": root / "code_text_document", "text": root / "text_text_document"}
    for i, p in enumerate(prefixes.values()):
        write_prefix(p, seed=i + 1, documents=60)
    mixture = write_mixture(root / "mix.yaml", prefixes, {"code": "16k", "text": "84k"})
    hf = make_hf_llama(root / "hf")
    rc, _, err = cptkit("convert", "hf-to-mcore", hf, root / "base")
    assert rc == 0, err[-2000:]
    recipe = write_recipe(root / "r.yaml", mixture, root / "run")
    rc, _out, err = cptkit(
        "train",
        recipe,
        f"model.init_checkpoint={root / 'base'}",
        "training.train_iters=6",
        "checkpoint.interval_iters=2",
        "checkpoint.keep_last=null",
        "eval.interval_iters=null",
    )
    assert rc == 0, err[-3000:]
    return {"root": root, "recipe": recipe, "run": root / "run", "hf": hf, "mixture": mixture}


def _copy_run(saved_run, dst: Path) -> tuple[Path, Path]:
    """A private copy of the saved run and a recipe pointing at it (tests must not damage the shared one)."""
    shutil.copytree(saved_run["run"], dst / "run")
    recipe = write_recipe(dst / "r.yaml", saved_run["mixture"], dst / "run")
    return recipe, dst / "run"


def _corrupt(path: Path, at: int = 4096, nbytes: int = 64) -> None:
    with open(path, "r+b") as f:
        f.seek(min(at, path.stat().st_size - nbytes))
        f.write(b"\xff" * nbytes)  # 0xffffffff as fp32 is NaN; the size stays the same


def test_every_save_records_checksums_of_every_file(saved_run):
    from cptkit.model.integrity import MANIFEST, checkpoint_files, find_damage

    ckpt = saved_run["run"] / "checkpoints" / "iter_0000006"
    doc = json.loads((ckpt / MANIFEST).read_text())
    assert set(doc["files"]) == set(checkpoint_files(ckpt)) and doc["iteration"] == 6
    assert any(f.endswith(".distcp") for f in doc["files"]) and "cptkit_state.json" in doc["files"]
    assert any(f.startswith("hf_assets/") for f in doc["files"])
    assert find_damage(ckpt) is None
    state = json.loads((ckpt / "cptkit_state.json").read_text())
    assert (
        state["seq_length"] == 64
        and state["global_batch_size"] == 8
        and state["mixture"]["tokenizer"] == str(saved_run["mixture"].parent / "tokenizer.json")
    )  # the tiny data's declared tokenizer (train_helpers.write_mixture)


def test_corrupted_distcp_is_detected_by_resume_status_convert_and_fallback_needs_consent(saved_run, tmp_path):
    recipe, run = _copy_run(saved_run, tmp_path)
    ckpts = run / "checkpoints"
    shard = sorted((ckpts / "iter_0000006").glob("*.distcp"))[0]
    _corrupt(shard)

    # status --verify: names the damaged file, exit 1; the earlier checkpoints are intact (not a blind check).
    rc, out, _ = cptkit("status", run, "--verify")
    assert rc == 1, out
    assert f"iter_0000006 (latest): DAMAGED: {shard}: sha256 mismatch" in out
    assert "iter_0000004: OK" in out and "iter_0000002: OK" in out

    # Resume refuses the damaged latest checkpoint, naming the file and the way out; nothing is trained or deleted.
    rc, out, err = cptkit("train", recipe, "training.train_iters=8", "checkpoint.keep_last=1")
    assert rc == 2, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert str(shard) in line and "--resume-from 4" in line and "checkpoint.resume_from: 4" in line
    assert "Traceback" not in err
    assert max(json.loads(x)["iteration"] for x in (run / "logs" / "metrics.jsonl").read_text().splitlines()) == 6
    assert sorted(p.name for p in ckpts.glob("iter_*")) == ["iter_0000002", "iter_0000004", "iter_0000006"]

    # Export and eval's loader refuse it too.
    rc, _, err = cptkit("convert", "mcore-to-hf", run, tmp_path / "release")
    assert rc == 2 and str(shard) in err and "sha256 mismatch" in err
    assert not (tmp_path / "release").exists()
    from cptkit.errors import UserError
    from cptkit.eval.targets import Target, convert

    with pytest.raises(UserError, match="sha256 mismatch"):
        convert(Target(name="x", output=tmp_path / "ev", hf_dir=None, iteration=6, checkpoint=ckpts / "iter_0000006"))

    # Told to, the run continues from the newest intact checkpoint; the damaged one is replaced when 6 is re-saved.
    longer = ("training.train_iters=8", "schedule.lr_decay_iters=6", "checkpoint.interval_iters=2")
    rc, out, err = cptkit("train", recipe, *longer, "--resume-from", "4")
    assert rc == 0, err[-3000:]
    assert f"resumed from {ckpts / 'iter_0000004'}" in out
    assert (ckpts / "latest_checkpointed_iteration.txt").read_text().strip() == "8"
    rc, out, _ = cptkit("status", run, "--verify")
    assert rc == 0 and "DAMAGED" not in out, out  # 6 was saved again (keep_last 2 then removed 2 and 4)
    assert sorted(p.name for p in ckpts.glob("iter_*")) == ["iter_0000006", "iter_0000008"]
    # A requeued job with the same flag does not go back to 4 again: the chain continues from the pointer.
    rc, out, err = cptkit("train", recipe, "training.train_iters=10", "schedule.lr_decay_iters=6", "--resume-from", "4")
    assert rc == 0 and "was applied by an earlier job" in out, err[-2000:]
    assert f"resumed from {ckpts / 'iter_0000008'}" in out


def test_export_refuses_non_finite_weights(tmp_path):
    """A checkpoint holding inf (what the corrupted .distcp gave) is never released; the same model without the inf
    values exports (so the check is not blind)."""
    import torch
    from safetensors.torch import load_file, save_file

    hf = make_hf_llama(tmp_path / "hf")
    weights = load_file(hf / "model.safetensors")
    weights["model.embed_tokens.weight"][:2] = float("inf")
    save_file(weights, tmp_path / "bad.safetensors", metadata={"format": "pt"})
    shutil.copytree(hf, tmp_path / "hf_bad")
    shutil.move(tmp_path / "bad.safetensors", tmp_path / "hf_bad" / "model.safetensors")
    for name in ("hf", "hf_bad"):
        rc, _, err = cptkit("convert", "hf-to-mcore", tmp_path / name, tmp_path / f"{name}_mc")
        assert rc == 0, err
    rc, _, err = cptkit("convert", "mcore-to-hf", tmp_path / "hf_bad_mc", tmp_path / "out_bad", "--no-verify")
    assert rc == 2 and "embedding.word_embeddings.weight holds 128 non-finite values; refusing to export" in err
    assert not (tmp_path / "out_bad").exists() and not list(tmp_path.glob(".out_bad.partial-*"))
    rc, _, err = cptkit("convert", "mcore-to-hf", tmp_path / "hf_mc", tmp_path / "out", "--no-verify")
    assert rc == 0, err
    (shard,) = (tmp_path / "out").glob("model*.safetensors")
    assert torch.isfinite(load_file(shard)["model.embed_tokens.weight"]).all()


def test_convert_verify_works_on_training_checkpoints_and_export_runs_it(saved_run, tmp_path):
    """Fault 6: `convert verify` on a run's iter_N (optimizer state, no _extra_state) — before the fix a missing-key
    error. The training moved the weights away from the base model, so the base HF model must MISMATCH (the check is
    not blind), while the run's own export matches."""
    ckpt = saved_run["run"] / "checkpoints" / "iter_0000004"
    rc, out, err = cptkit("convert", "mcore-to-hf", ckpt, tmp_path / "release", "--dtype", "fp32")
    assert rc == 0, err[-3000:]
    assert "OK: max |dlogit|" in out  # the export verified itself by default
    rc, out, err = cptkit("convert", "verify", tmp_path / "release", ckpt, "--seq-len", "64", "--json")
    assert rc == 0, err[-3000:]
    assert json.loads(out.strip().splitlines()[-1])["ok"] is True
    rc, out, err = cptkit("convert", "verify", saved_run["hf"], ckpt, "--seq-len", "64", "--json")
    assert rc == 1 and json.loads(out.strip().splitlines()[-1])["max_abs_diff"] > 1e-2, err[-2000:]
    # bf16 (the default release dtype) verifies against the checkpoint's weights rounded to bf16.
    rc, out, err = cptkit("convert", "mcore-to-hf", saved_run["run"], tmp_path / "release_bf16")
    assert rc == 0 and "OK: max |dlogit|" in out, err[-3000:]
    assert json.loads((tmp_path / "release_bf16" / "config.json").read_text())["vocab_size"] == VOCAB
