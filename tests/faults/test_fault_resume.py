"""Issue #12, faults 3 and 4, reproduced on a real `cptkit train` run and shown fixed:

- fault 3: with `latest_checkpointed_iteration.txt` deleted, a rerun started from the base weights over the existing
  `iter_*` folders and retention then deleted the run's real checkpoints. Now the run is refused with the command that
  rebuilds the pointer, and retention deletes only what the run can account for.
- fault 4: a changed `training.seq_length` on resume was accepted (consumed_tokens then wrong). Now everything that
  changes what the consumed samples mean is refused with the reason; a global-batch-size change carries the sample
  count over (as megatron-core does); a finished run whose train_iters is raised continues and says so.
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
from train_helpers import VOCAB, write_mixture, write_prefix, write_recipe

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.slow]  # real training runs in subprocesses
LATEST = "latest_checkpointed_iteration.txt"


def cptkit(*args: str, timeout: float = 600) -> tuple[int, str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "cptkit.cli", *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout
    )
    return proc.returncode, proc.stdout, proc.stderr


def metrics(run: Path) -> dict[int, dict]:
    out = {}
    for line in (run / "logs" / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out[rec["iteration"]] = rec
    return out


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> dict[str, Path]:
    """A finished 4-iteration run that saved iterations 2 and 4 (random init, 64-token sequences, GBS 8)."""
    root = tmp_path_factory.mktemp("faults_resume")
    prefixes = {"code": root / "code_text_document", "text": root / "text_text_document"}
    for i, p in enumerate(prefixes.values()):
        write_prefix(p, seed=i + 1, documents=60)
    mixture = write_mixture(root / "mix.yaml", prefixes, {"code": "16k", "text": "84k"})
    recipe = write_recipe(root / "r.yaml", mixture, root / "run")
    rc, _, err = cptkit(
        "train",
        recipe,
        "training.train_iters=4",
        "checkpoint.interval_iters=2",
        "checkpoint.keep_last=null",
        "eval.interval_iters=null",
    )
    assert rc == 0, err[-3000:]
    return {"root": root, "run": root / "run", "mixture": mixture, "prefixes": prefixes}


def _copy(finished_run, dst: Path) -> tuple[Path, Path]:
    shutil.copytree(finished_run["run"], dst / "run")
    return write_recipe(dst / "r.yaml", finished_run["mixture"], dst / "run"), dst / "run"


def test_lost_pointer_is_refused_rebuilt_by_command_and_retention_keeps_what_it_cannot_account_for(
    finished_run, tmp_path
):
    recipe, run = _copy(finished_run, tmp_path)
    ckpts = run / "checkpoints"
    (ckpts / LATEST).unlink()
    foreign = ckpts / "iter_0000001"  # e.g. copied in by hand: no checksum manifest, not this run's to delete
    shutil.copytree(ckpts / "iter_0000002", foreign)
    (foreign / "cptkit_checksums.json").unlink()
    more = (
        "training.train_iters=8",
        "checkpoint.interval_iters=2",
        "checkpoint.keep_last=1",
        "eval.interval_iters=null",
    )

    # Before the fix: exit 0, training from the base weights, and retention deleted iterations 2 and 4.
    rc, out, err = cptkit("train", recipe, *more)
    assert rc == 2, out + err[-3000:]
    line = err.strip().splitlines()[-1]
    assert "no latest_checkpointed_iteration.txt" in line and f"cptkit status {run} --rebuild-pointer" in line
    assert "--resume-from ITER" in line and "Traceback" not in err
    assert sorted(p.name for p in ckpts.glob("iter_*")) == ["iter_0000001", "iter_0000002", "iter_0000004"]

    rc, out, err = cptkit("status", run, "--rebuild-pointer")
    assert rc == 0 and (ckpts / LATEST).read_text().strip() == "4", out + err

    # The finished run goes on to 8 (saying so), resumes from 4, and keep_last=1 deletes only what it can account
    # for: its own saves and the checkpoints up to its resume point that carry a manifest - not the foreign one.
    rc, out, err = cptkit("train", recipe, *more)
    assert rc == 0, err[-3000:]
    assert "was COMPLETED at iteration 4; training.train_iters is now 8" in out
    assert (
        "the run finished at iteration 4; training.train_iters is now 8: continuing after the finished LR decay" in out
    )
    assert f"resumed from {ckpts / 'iter_0000004'}" in out
    assert sorted(p.name for p in ckpts.glob("iter_*")) == ["iter_0000001", "iter_0000008"]
    recs = metrics(run)
    assert recs[8]["consumed_samples"] == 64 and recs[8]["lr"] == pytest.approx(recs[4]["lr"])  # min_lr: decay done


def test_retention_considers_only_accountable_checkpoints(tmp_path):
    from cptkit.train.checkpoint import apply_retention
    from cptkit.train.checkpointer import accountable, writer_rank

    # Each rank hashes the shards it wrote itself (DCP's __RANK_N.distcp); rank 0 the rest.
    assert [writer_rank(f) for f in ("__0_0.distcp", "__13_1.distcp", ".metadata", "common.pt")] == [0, 13, 0, 0]

    for i in (1, 2, 3, 4, 5, 6, 7):
        (tmp_path / f"iter_{i:07d}").mkdir()
    for i in (2, 3, 4):  # saved by cptkit with checksums
        (tmp_path / f"iter_{i:07d}" / "cptkit_checksums.json").write_text("{}")
    (tmp_path / LATEST).write_text("7\n")
    # This life resumed from 3 (a --resume-from back past 4 and 5) and wrote 6 and 7.
    deletable = accountable(tmp_path, written={6, 7}, resumed_from=3)
    assert deletable == {2, 3, 6, 7}  # not 1 (no manifest), not 4 (newer than the resume point, not written now)
    assert apply_retention(tmp_path, 1, None, deletable) == [2, 3, 6]
    assert sorted(p.name for p in tmp_path.glob("iter_*")) == [
        "iter_0000001",
        "iter_0000004",
        "iter_0000005",
        "iter_0000007",
    ]
    # Not blind: without the accounting, the same policy deletes everything but the newest.
    assert apply_retention(tmp_path, 1, None) == [1, 4, 5]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("training.seq_length=32", "training.seq_length"),
        ("data.split=900,100,0", "data.split"),
        ("training.seed=7", "training.seed"),
    ],
)
def test_changes_that_move_the_data_position_are_refused(finished_run, tmp_path, override, field):
    recipe, run = _copy(finished_run, tmp_path)
    rc, out, err = cptkit("train", recipe, "training.train_iters=6", "schedule.lr_decay_iters=4", override)
    assert rc == 2, out + err[-3000:]
    line = err.strip().splitlines()[-1]
    assert f"{field}: the checkpoint consumed 32 samples with {field}=" in line and "Restore" in line
    assert max(metrics(run)) == 4  # nothing trained
    # Not blind: the unchanged recipe resumes.
    rc, out, err = cptkit("train", recipe, "training.train_iters=5", "schedule.lr_decay_iters=4")
    assert rc == 0 and "resumed from" in out, err[-3000:]


def test_a_different_tokenizer_is_refused(finished_run, tmp_path):
    recipe, _run = _copy(finished_run, tmp_path)
    # A valid tokenizer of the same size whose ids spell other words: the settings check passes, the resume check
    # (sha256 of the tokenizer file) must refuse.
    from tokenizers import Tokenizer, models

    other = tmp_path / "other-tokenizer.json"
    words = {f"w{i}": i for i in range(VOCAB - 1)} | {"</s>": VOCAB - 1}
    Tokenizer(models.WordLevel(words, unk_token="w0")).save(str(other))
    mixture = write_mixture(tmp_path / "mix.yaml", finished_run["prefixes"], {"code": "16k", "text": "84k"})
    text = mixture.read_text()
    declared = next(line for line in text.splitlines() if line.startswith("tokenizer: "))
    mixture.write_text(text.replace(declared, f"tokenizer: {other}"))  # the same ids, another tokenizer file
    rc, out, err = cptkit("train", recipe, f"data.mixture={mixture}", "training.train_iters=6")
    assert rc == 2, out + err[-3000:]
    assert "the same token ids would mean different text" in err.strip().splitlines()[-1]


def test_global_batch_size_change_carries_the_sample_count_over(finished_run, tmp_path):
    recipe, run = _copy(finished_run, tmp_path)
    rc, out, err = cptkit("train", recipe, "training.global_batch_size=16", "training.train_iters=6")
    assert rc == 0, err[-3000:]
    assert "global batch size 8 -> 16 at iteration 4: the 32 consumed samples carry over" in out
    recs = metrics(run)
    assert [recs[i]["consumed_samples"] for i in (4, 5, 6)] == [32, 48, 64]
    assert recs[6]["consumed_tokens"] == 64 * 64
    state = json.loads((run / "checkpoints" / "iter_0000006" / "cptkit_state.json").read_text())
    assert state["consumed_samples"] == 64 and state["global_batch_size"] == 16
