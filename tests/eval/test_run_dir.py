"""`cptkit eval RUN_DIR`: saved iterations only, one per array index, converted folders reused, results beside them.

CPU, ~15 s:  pytest tests/eval/test_run_dir.py -q
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cptkit.cli import main
from cptkit.errors import UserError
from cptkit.eval import runner, targets


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run_a"
    for it in (10, 20, 30):
        (run / "checkpoints" / f"iter_{it:07d}").mkdir(parents=True)
    # iteration 30 is still being written: the latest-complete marker says 20
    (run / "checkpoints" / "latest_checkpointed_iteration.txt").write_text("20\n")
    (run / "checkpoints" / "iter_0000010" / "cptkit_state.json").write_text(json.dumps({"consumed_tokens": 1000}))
    (run / "logs").mkdir()
    rows = [{"iteration": i, "loss": 3.0 - i / 100, "consumed_tokens": i * 100} for i in range(1, 31)]
    (run / "logs" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"iteration": 3')
    return run


def test_saved_iterations_and_tokens(tmp_path):
    run = _run_dir(tmp_path)
    assert targets.saved_iterations(run) == [10, 20]
    assert targets.consumed_tokens(run, 10) == 1000  # from the checkpoint's state
    assert targets.consumed_tokens(run, 20) == 2000  # from logs/metrics.jsonl (torn last line ignored)
    picked = targets.targets_for(run, "quick", output=None, iteration_index=1)
    assert [(t.iteration, t.output) for t in picked] == [(20, run / "eval" / "iter_0000020" / "quick.json")]
    with pytest.raises(UserError, match="no saved iteration at index 2"):
        targets.targets_for(run, "quick", output=None, iteration_index=2)


def test_iteration_index_converts_and_evaluates_one_checkpoint(
    preferring_llama, local_data, suite_file, tmp_path, capsys, monkeypatch
):
    """Iteration 20 is a real megatron-core checkpoint (made by `cptkit convert hf-to-mcore` from the hand-set model):
    `cptkit eval` converts it back with `cptkit convert mcore-to-hf` and must get exactly the HF model's scores."""
    run = _run_dir(tmp_path)
    ckpt = run / "checkpoints" / "iter_0000020"
    ckpt.rmdir()
    made = subprocess.run(
        [sys.executable, "-m", "cptkit.cli", "convert", "hf-to-mcore", str(preferring_llama), str(ckpt)],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    root, _ = local_data
    argv = ["eval", str(run), "--suite", str(suite_file), "--data-root", str(root), "--device", "cpu"]
    assert main([*argv, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "to do  run_a/iter_0000010 (convert first)" in plan and "to do  run_a/iter_0000020 (convert first)" in plan
    assert "iter_0000030" not in plan

    second = tmp_path / "second.yaml"
    second.write_text("name: second\ntasks:\n  - {column: MC, template: openbookqa, shots: 0, metric: 'acc,none'}\n")
    conversions = []
    real_convert = targets.convert
    monkeypatch.setattr(targets, "convert", lambda t: conversions.append(t.iteration) or real_convert(t))
    loads = []
    real_model = runner._model
    monkeypatch.setattr(runner, "_model", lambda *a, **k: loads.append(a[0]) or real_model(*a, **k))
    assert main([*argv, "--suite", str(second), "--iteration-index", "1", "--delete-converted"]) == 0
    assert conversions == [20] and len(loads) == 1  # one conversion and one model load serve both suites
    assert not (run / "hf" / "iter_0000020").exists()  # converted here, removed once scored
    assert json.loads((run / "eval" / "iter_0000020" / "second.json").read_text())["scores"] == {"MC": 0.75}
    doc = json.loads((run / "eval" / "iter_0000020" / "local.json").read_text())
    assert doc["scores"] == {"MC": 0.75, "Gen": 0.5}  # as the HF original scores in test_lm_eval
    assert doc["model"]["iteration"] == 20 and doc["model"]["consumed_tokens"] == 2000
    assert doc["model"]["checkpoint"] == str(ckpt)
    assert not (run / "eval" / "iter_0000010").exists()

    capsys.readouterr()
    assert main([*argv, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "done   run_a/iter_0000020" in plan and "to do  run_a/iter_0000010 (convert first)" in plan


def test_unconverted_checkpoint_goes_through_the_converter(tmp_path, monkeypatch):
    run = _run_dir(tmp_path)
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        out = Path(cmd[-1])
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    (target,) = targets.targets_for(run, "quick", output=None, iteration_index=0)
    assert target.hf_dir is None
    hf = targets.convert(target)
    assert hf == run / "hf" / "iter_0000010" and (hf / "config.json").is_file()
    assert calls[0][:5] == [sys.executable, "-m", "cptkit.cli", "convert", "mcore-to-hf"]
    assert calls[0][5] == str(run / "checkpoints" / "iter_0000010")
    assert not list((run / "hf").glob("*.tmp-*"))


def test_failed_conversion_leaves_nothing_behind(tmp_path, monkeypatch):
    run = _run_dir(tmp_path)

    def failing_run(cmd, **kwargs):
        Path(cmd[-1]).mkdir(parents=True)
        return subprocess.CompletedProcess(cmd, 2, "", "cptkit convert: error: bad checkpoint\n")

    monkeypatch.setattr(subprocess, "run", failing_run)
    (target,) = targets.targets_for(run, "quick", output=None, iteration_index=0)
    with pytest.raises(UserError, match="bad checkpoint"):
        targets.convert(target)
    assert not (run / "hf").exists() or not any((run / "hf").iterdir())


def test_cli_help_does_not_import_torch():
    code = (
        "import sys\nfrom cptkit.cli import main\n"
        "for argv in (['eval', '--help'], ['report', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "heavy = [m for m in ('torch', 'lm_eval', 'transformers', 'matplotlib') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "--iteration-index" in proc.stdout and "RUN_DIR" in proc.stdout
