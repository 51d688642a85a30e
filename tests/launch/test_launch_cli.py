"""`cptkit launch` (dry-run for every profile x shipped recipe, submit with a recorded chain) and `cptkit status`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from launchtest_util import ROOT

from cptkit.cli import main

BIG = sorted(p.name for p in (ROOT / "recipes").glob("*.yaml") if p.name != "tiny_cpu.yaml")
CLUSTERS = ["tsubame4", "abci3", "hyperpod", "slurm"]
SMALL = {"local": [], "test-slurm": ["parallel.num_gpus=2"], "test-sge": ["parallel.num_gpus=2"]}


def launch(*argv: str) -> int:
    return main(["launch", *argv])


def train(*argv: str) -> int:
    return launch("train", *argv)


@pytest.mark.parametrize("profile", CLUSTERS)
def test_dry_run_every_cluster_x_shipped_recipe(profile, site_env, capsys):
    for recipe in BIG:
        rc = train(f"recipes/{recipe}", "--cluster", f"launch/{profile}.yaml", "--chain", "2", "--dry-run")
        out, err = capsys.readouterr()
        assert rc == 0, f"{recipe} on {profile}: {err}"
        assert out.startswith("### ") and "#!/bin/bash" in out and "### submit" in out
        assert f"train recipes/{recipe}" in out


@pytest.mark.parametrize(("profile", "overrides"), SMALL.items())
def test_dry_run_small_profiles_x_tiny_recipe(profile, overrides, site_env, capsys):
    assert train("recipes/tiny_cpu.yaml", *overrides, "--cluster", f"launch/{profile}.yaml") == 0
    out = capsys.readouterr().out
    assert "tiny_cpu.yaml" in out


@pytest.fixture
def fake_scheduler(tmp_path, monkeypatch):
    """sbatch and qsub stand-ins on PATH: they log their argv and print a job id like the real ones."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "submitted.jsonl"
    for name, out in {"sbatch": "$N", "qsub": "$N.pbs01"}.items():
        script = bin_dir / name
        script.write_text(
            "#!/bin/bash\n"
            f"N=$(( $(wc -l < {log} 2>/dev/null || echo 0) + 100 ))\n"
            f"python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' \"$@\" >> {log}\n"
            f'echo "{out}"\n'
        )
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_submit_chain_records_jobs_and_status_shows_them(site_env, fake_scheduler, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CPTKIT_RUNS", str(tmp_path / "runs"))
    rc = train("recipes/swallowcode_exp1.yaml", "--cluster", "launch/abci3.yaml", "--chain", "3", "--submit")
    assert rc == 0, capsys.readouterr().err
    calls = [json.loads(line) for line in fake_scheduler.read_text().splitlines()]
    assert [c[:-1] for c in calls] == [[], ["-W", "depend=afterany:100.pbs01"], ["-W", "depend=afterany:101.pbs01"]]
    script = Path(calls[0][-1])
    assert script.parent == tmp_path / "runs" / "swallowcode_exp1" / "launch" and os.access(script, os.X_OK)
    run = tmp_path / "runs" / "swallowcode_exp1"
    jobs = [json.loads(line) for line in (run / "jobs.jsonl").read_text().splitlines()]
    assert [(j["job_id"], j["depends_on"], j["chain_index"]) for j in jobs] == [
        ("100.pbs01", None, 0),
        ("101.pbs01", "100.pbs01", 1),
        ("102.pbs01", "101.pbs01", 2),
    ]
    assert (run / "logs" / "jobs").is_dir()  # PBS does not create the log directory itself

    # the trainer's files, as it writes them
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "latest_checkpointed_iteration.txt").write_text("500\n")
    (run / "recipe.resolved.yaml").write_text("training:\n  train_iters: 12500\n")
    (run / "logs" / "metrics.jsonl").write_text(json.dumps({"iteration": 517, "loss": 1.93}) + "\n")
    capsys.readouterr()
    assert main(["status", str(run), "--no-query"]) == 0
    out = capsys.readouterr().out
    assert "iterations:  500 / 12500 saved" in out and "iter_0000500" in out
    assert "last logged: iteration 517, loss 1.93" in out
    assert "102.pbs01" in out and "chain 3/3 after 101.pbs01" in out and "in progress" in out
    (run / "COMPLETED").write_text("")
    assert main(["status", str(run), "--json", "--no-query"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["completed"] is True and len(s["jobs"]) == 3


def test_submit_tokenize_array_then_merge_after_ok(site_env, fake_scheduler, tmp_path, capsys):
    work = tmp_path / "tok"
    rc = launch("tokenize", "data_mix/demo.yaml", "--num-shards", "4", "--cluster", "launch/hyperpod.yaml",
                "--work-dir", str(work), "--submit")  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    calls = [json.loads(line) for line in fake_scheduler.read_text().splitlines()]
    assert calls[0][:-1] == ["--parsable"] and calls[1][:-1] == ["--parsable", "--dependency=afterok:100"]
    assert "#SBATCH --array=0-3" in Path(calls[0][-1]).read_text()
    assert [j["kind"] for j in map(json.loads, (work / "jobs.jsonl").read_text().splitlines())] == ["tokenize", "merge"]


def test_submit_failure_is_one_line(site_env, tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/bash\necho 'sbatch: error: Invalid partition name specified' >&2\nexit 1\n")
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CPTKIT_RUNS", str(tmp_path / "runs"))
    assert train("recipes/swallowcode_exp1.yaml", "--cluster", "launch/slurm.yaml", "--submit") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Invalid partition name" in err
    assert not (tmp_path / "runs" / "swallowcode_exp1" / "jobs.jsonl").exists()  # nothing recorded


def test_eval_and_convert_dry_run(site_env, tmp_path, capsys):
    run = tmp_path / "run"
    for it in (500, 1000):
        (run / "checkpoints" / f"iter_{it:07d}").mkdir(parents=True)
    assert launch("eval", str(run), "--suite", "ja", "--cluster", "launch/tsubame4.yaml") == 0
    out = capsys.readouterr().out
    assert "#$ -t 1-2" in out and f"eval {run} --suite ja" in out
    # the convert arguments take the rest of the command line, so they come last
    assert launch("convert", "--cluster", "launch/abci3.yaml", "mcore-to-hf", "CKPT", "OUT") == 0
    out = capsys.readouterr().out
    assert "#PBS -q rt_HC" in out and "cptkit convert mcore-to-hf CKPT OUT" in out
    assert launch("eval", str(tmp_path), "--suite", "ja", "--cluster", "launch/tsubame4.yaml") == 2
    assert "no checkpoints" in capsys.readouterr().err


def test_dry_run_and_status_import_no_torch(site_env, tmp_path):
    """A login node renders and inspects jobs without torch, megatron-core or transformers."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom cptkit.cli import main\n"
        "assert main(['launch', 'train', 'recipes/swallowcode_exp1.yaml', '--cluster', 'launch/tsubame4.yaml', '--dry-run']) == 0\n"
        f"assert main(['status', {str(tmp_path)!r}, '--no-query']) == 0\n"
        "bad = sorted(m for m in ('torch', 'megatron', 'transformers') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr


LEGACY = [
    (["recipes/swallowcode_exp1.yaml", "--cluster", "launch/abci3.yaml", "--chain", "2"],
     ["train", "recipes/swallowcode_exp1.yaml", "--cluster", "launch/abci3.yaml", "--chain", "2"]),
    (["--tokenize", "data_mix/demo.yaml", "--num-shards", "4", "--cluster", "launch/hyperpod.yaml"],
     ["tokenize", "data_mix/demo.yaml", "--num-shards", "4", "--cluster", "launch/hyperpod.yaml"]),
    (["--cluster", "launch/abci3.yaml", "--convert", "mcore-to-hf", "CKPT", "OUT"],
     ["convert", "--cluster", "launch/abci3.yaml", "mcore-to-hf", "CKPT", "OUT"]),
    (["--eval=RUN", "--suite", "ja", "--cluster", "launch/tsubame4.yaml", "--num-iterations", "2"],
     ["eval", "RUN", "--suite", "ja", "--cluster", "launch/tsubame4.yaml", "--num-iterations", "2"]),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new"), LEGACY)
def test_old_flag_forms_still_work_for_one_release_with_a_notice(old, new, site_env, capsys):
    """The pre-subcommand forms print the same job and one stderr line naming the new form."""
    assert launch(*new) == 0
    out_new, err_new = capsys.readouterr()
    assert err_new == ""
    assert launch(*old) == 0
    out_old, err_old = capsys.readouterr()
    assert out_old == out_new
    assert (
        err_old
        == f"cptkit launch: this form is deprecated and goes in the next release; use: cptkit launch {' '.join(new)}\n"
    )


def test_targets_are_subcommands_with_their_own_options(site_env, capsys):
    with pytest.raises(SystemExit) as e:
        launch("tokenize", "data_mix/demo.yaml", "--cluster", "launch/hyperpod.yaml")  # no --num-shards
    assert e.value.code == 2 and "--num-shards" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        launch("eval", "runs/x", "--suite", "ja", "--cluster", "launch/hyperpod.yaml", "--nodes", "2")  # a train option
    assert e.value.code == 2 and "unrecognized arguments: --nodes 2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        launch("frobnicate", "--cluster", "launch/hyperpod.yaml")
    err = capsys.readouterr().err
    assert e.value.code == 2 and "invalid choice: 'frobnicate'" in err and "deprecated" not in err
    # convert: a launch option after the convert arguments is refused, not handed to `cptkit convert`
    assert launch("convert", "--cluster", "launch/abci3.yaml", "mcore-to-hf", "CKPT", "OUT", "--submit") == 2
    err = capsys.readouterr().err
    assert "--submit: --submit after the convert arguments would be passed to `cptkit convert`" in err
    assert launch("convert", "--cluster", "launch/abci3.yaml", "--", "mcore-to-hf", "CKPT", "OUT") == 0
    assert "cptkit convert mcore-to-hf CKPT OUT" in capsys.readouterr().out


def test_a_new_target_is_one_class(site_env, capsys, monkeypatch):
    """The extension point for curate/selftest/release: a Target subclass in TARGETS is a subcommand with the common
    options, dry-run and submission, without touching cli.py."""
    from cptkit.launch import render, targets

    class Hello(targets.Target):
        name, help = "hello", "say hello on a CPU node"

        def add_arguments(self, p):
            p.add_argument("who")

        def build(self, args, profile, *, walltime, workdir):
            job = render.render_task(profile, "hello", "cpu", "hello", f"echo hello {args.who}", workdir=workdir,
                                     log_dir="/tmp/logs", walltime=walltime, array_size=None, banner=["hello"])  # fmt: skip
            return targets.Launch([job], Path("runs/hello"), Path("runs/hello/logs"))

    with pytest.raises(SystemExit):  # not blind: unknown before it is registered
        launch("hello", "world", "--cluster", "launch/hyperpod.yaml")
    assert "invalid choice: 'hello'" in capsys.readouterr().err
    monkeypatch.setitem(targets.TARGETS, "hello", Hello())
    assert launch("hello", "world", "--cluster", "launch/hyperpod.yaml", "--walltime", "00:10:00") == 0
    out = capsys.readouterr().out
    assert "#SBATCH --time=00:10:00" in out and "echo hello world" in out and "sbatch --parsable" in out


def test_eval_backend_and_tensor_parallel_size(site_env, tmp_path, capsys):
    """`launch eval` renders the vLLM path by default, tensor-parallel on one GPU or a whole node, never wider."""
    run = tmp_path / "run"
    for it in (500, 1000):
        (run / "checkpoints" / f"iter_{it:07d}").mkdir(parents=True)
    base = ("eval", str(run), "--suite", "code", "--cluster", "launch/abci3.yaml")
    assert launch(*base) == 0
    out = capsys.readouterr().out
    assert "--backend vllm --model-args tensor_parallel_size=1" in out and "ngpus=1" in out
    assert launch(*base, "--tensor-parallel-size", "node") == 0
    out = capsys.readouterr().out
    assert "tensor_parallel_size=8" in out and "#PBS -l select=1:ncpus=192:ngpus=8" in out and "#PBS -J 0-1" in out
    assert launch(*base, "--backend", "hf") == 0
    out = capsys.readouterr().out
    assert "--backend hf \\" in out and "tensor_parallel_size" not in out
    for bad, message in (
        (["--tensor-parallel-size", "16"], "16 GPUs is more than the 8 GPUs per node of abci3"),
        (["--tensor-parallel-size", "two"], "give a GPU count or `node`"),
        (["--backend", "hf", "--tensor-parallel-size", "2"], "tensor parallelism is for the vllm backend"),
    ):
        assert launch(*base, *bad) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--tensor-parallel-size" in err and message in err
