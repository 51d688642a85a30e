"""`cptkit release` end to end on the session's tiny run: the export (convert mcore-to-hf, verified by logits) plus
README.md under the release name, published by one rename; `--every-eval`; `--dry-run`; one-line errors (exit 2);
the `--push` layouts (release/push.py's plan_uploads, the upload itself recorded by a stand-in).

    pytest tests/release/test_release_cli.py -q      (~40 s after the session's tiny run)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cptkit.cli import main

NAME4 = "tiny_release-LR3e-3-iter0000004"  # tiny_cpu.yaml's template "{name}-LR{lr:sci}-iter{iteration:07d}"
NAME2 = "tiny_release-LR3e-3-iter0000002"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cptkit.cli", "release", *args], capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow  # the logit check loads both models in spawned gloo processes: ~1-2 min on 2 busy cores
def test_release_latest_then_rerun_updates_the_card(run_copy, tmp_path):
    out = tmp_path / "out"
    r = cli(str(run_copy), str(out))
    assert r.returncode == 0, r.stderr
    folder = out / NAME4
    files = sorted(p.name for p in folder.iterdir())
    assert {"README.md", "config.json", "generation_config.json", "tokenizer.json"} <= set(files), files
    assert any(f.endswith(".safetensors") for f in files)
    assert "logits" in r.stdout.lower() or "verify" in r.stdout.lower()  # verified by default
    assert sorted(p.name for p in out.iterdir()) == [NAME4]  # no temporary folder left behind
    card = (folder / "README.md").read_text()
    assert f"# {NAME4}\n" in card and "after 2.048K training tokens" in card
    config = json.loads((folder / "config.json").read_text())
    assert config["num_hidden_layers"] == 2 and config["torch_dtype"] == "bfloat16"

    # more results arrive: a rerun rewrites the card only
    from release_helpers import write_eval

    write_eval(run_copy, 4, {"OpenBookQA": 0.5, "HumanEval": 0.25}, 2048)
    weights = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.safetensors")}
    r = cli(str(run_copy), str(out))
    assert r.returncode == 0 and "already exported; model card updated" in r.stdout, r.stderr
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.safetensors")} == weights
    # the `en` suite in seed 003's layout (every column, 3 decimals, En Avg): the new row is there
    dashes = " | ".join(["–"] * 8)
    assert f"| 2.048K | 0.500 | {dashes} | 0.250 | – |" in (folder / "README.md").read_text()


def test_every_eval_releases_only_evaluated_checkpoints(run_copy, tmp_path, capsys):
    out = tmp_path / "out"
    # the shape `cptkit launch release` runs: OUT after the options
    assert main(["release", str(run_copy), "--every-eval", str(out), "--no-verify", "--dtype", "fp32"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [NAME2]
    files = {p.name for p in (out / NAME2).iterdir()}
    assert {"README.md", "config.json", "tokenizer.json", "model.safetensors.index.json"} <= files, files
    card = (out / NAME2 / "README.md").read_text()
    assert f"# {NAME2}\n" in card and "after 1.024K training tokens" in card and "| 1.024K |" in card
    # the default OUT is RUN_DIR/release; a dry run writes nothing
    capsys.readouterr()
    assert main(["release", str(run_copy), "--iteration", "2", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert f"would write {run_copy / 'release' / NAME2}/" in text and f"----- {run_copy / 'release' / NAME2}" in text
    assert not (run_copy / "release").exists()
    # the dry run's file list is what the export wrote (same checkpoint, exported above)
    listed = {
        ln.strip() for ln in text.splitlines() if ln.startswith("    ") and " " not in ln.strip() and "/" not in ln
    }
    assert listed == {p.name for p in (out / NAME2).iterdir()}, listed


def test_bad_input_is_one_line_exit_2_without_traceback(tmp_path):
    r = cli(str(tmp_path / "nope"))
    assert r.returncode == 2 and "no such run directory" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "args,error",
    [
        (["{run}", "--iteration", "3"], "no saved checkpoint at iteration 3"),
        (["{run}", "--set", "training.seq_length=5"], "release.* keys only"),
        (["{run}", "--set", "release.name=a--b{{iteration}}"], "release.name"),
        (
            ["{run}", "--set", "release.name=fixed-name", "--iteration", "2", "--push", "o/x"],
            "named by its release folder",
        ),
        (["{recipe_dir}"], "no recipe.resolved.yaml"),
    ],
)
def test_bad_input(run_copy, capsys, args, error):
    args = [a.format(run=run_copy, recipe_dir=run_copy / "logs") for a in args]
    assert main(["release", *args, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert error in err and len(err.strip().splitlines()) == 1, err


def test_same_name_for_two_checkpoints_is_refused(run_copy, capsys):
    from release_helpers import write_eval

    write_eval(run_copy, 4, {"OpenBookQA": 0.5}, 2048)
    assert main(["release", str(run_copy), "--every-eval", "--dry-run", "--set", "release.name=fixed"]) == 2
    assert "get the same release name 'fixed'" in capsys.readouterr().err


def test_every_eval_without_results_and_a_broken_template(run_copy, capsys):
    import shutil

    shutil.rmtree(run_copy / "eval")
    assert main(["release", str(run_copy), "--every-eval", "--dry-run"]) == 2
    assert "no evaluated checkpoint" in capsys.readouterr().err
    bad = run_copy / "bad.j2"
    bad.write_text("{% for %}\n")
    assert main(["release", str(run_copy), "--dry-run", "--set", f"release.card_template={bad}"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "release.card_template" in err and len(err.strip().splitlines()) == 1


@pytest.fixture
def fake_push(monkeypatch):
    """Stands in for the upload (`cptkit.release.push.push`): records the calls, lists the folder. The layouts are
    the real module's `plan_uploads`."""
    calls = []

    def push(folder, repo_id, *, revision, private, dry_run, create_pr=False):
        calls.append(
            {"folder": Path(folder), "repo_id": repo_id, "revision": revision, "private": private, "dry_run": dry_run}
        )
        return sorted(p.name for p in Path(folder).iterdir())

    import cptkit.release.push

    monkeypatch.setattr(cptkit.release.push, "push", push)
    return calls


def test_push_layouts(run_copy, tmp_path, fake_push, capsys):
    out = tmp_path / "out"
    assert main(["release", str(run_copy), str(out), "--every-eval", "--no-verify", "--push", "my-org"]) == 0
    assert fake_push == [
        {"folder": out / NAME2, "repo_id": f"my-org/{NAME2}", "revision": None, "private": False, "dry_run": False}
    ]
    card = (out / NAME2 / "README.md").read_text()
    assert f'model = "my-org/{NAME2}"' in card
    fake_push.clear()
    # one repository, a branch per checkpoint; a dry run of an exported folder lists its files
    args = ["release", str(run_copy), str(out), "--iteration", "2", "--revision-per-checkpoint", "--private"]
    assert main([*args, "--push", "my-org", "--dry-run"]) == 0
    assert fake_push[-1]["repo_id"] == "my-org/tiny_release-LR3e-3" and fake_push[-1]["revision"] == "iter_0000002"
    assert fake_push[-1]["dry_run"] and fake_push[-1]["private"]
    text = capsys.readouterr().out
    assert "would upload to my-org/tiny_release-LR3e-3 branch iter_0000002 (private)" in text
    assert "    README.md\n" in text and 'revision = "iter_0000002"' in text
    assert main([*args, "--push", "my-org/one-repo", "--dry-run"]) == 0
    assert fake_push[-1]["repo_id"] == "my-org/one-repo"
    # one repository per checkpoint is named by the release name, never by --push
    assert main(["release", str(run_copy), str(out), "--iteration", "2", "--push", "my-org/other", "--dry-run"]) == 2
    assert "named by its release folder" in capsys.readouterr().err
