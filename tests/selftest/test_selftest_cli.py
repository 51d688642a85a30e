"""`cptkit selftest` on a machine without a GPU, its input errors, and its checks on CPU/gloo (`--cpu-dry`), each
shown to fail when the thing it checks is broken."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cptkit.cli import main

ROOT = Path(__file__).resolve().parents[2]
needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")


@needs_no_gpu
def test_no_gpu_says_so_and_exits_2(capsys):
    assert main(["selftest"]) == 2
    err = capsys.readouterr().err
    assert "no GPU on this machine" in err and "--cpu-dry" in err and "Traceback" not in err


def test_input_errors_are_one_line(capsys, tmp_path):
    assert main(["selftest", "--cpu-dry", "--only", "versions,nope"]) == 2
    assert "--only: unknown check(s) nope" in capsys.readouterr().err
    assert main(["selftest", "--cpu-dry", "--recipe", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


# -- the checks themselves, in 2 spawned gloo ranks -------------------------------------------------------------------
def _run_checks(rank, world, workdir, broken):
    from cptkit.selftest import checks

    if broken:  # a load that silently does nothing: the TP=2 / bf16 model keeps its own random weights
        checks._load = lambda model, path: None
    ctx = checks.Ctx(rank=rank, world=world, local_world=world, device=torch.device("cpu"), cpu_dry=True,
                     workdir=Path(workdir), allreduce_bytes=1 << 20)  # fmt: skip
    rows = checks.run_all(ctx, ["allreduce", "tp2_vs_tp1", "bf16_vs_fp32"])
    return [(r.check, r.status, r.summary) for r in rows]


@pytest.mark.slow  # ~1-2 min each on a loaded 2-core machine
@pytest.mark.parametrize("broken", [False, True])
def test_cpu_dry_checks_pass_and_catch_a_broken_load(tmp_path, broken):
    from cptkit.backend.spawn import run_spawned

    rows = {c: (s, text) for c, s, text in run_spawned(_run_checks, 2, str(tmp_path), broken)[0]}
    assert rows["allreduce_intra"][0] == "INFO" and "busbw" in rows["allreduce_intra"][1]
    want = "FAIL" if broken else "PASS"
    assert rows["tp2_vs_tp1"][0] == want, rows["tp2_vs_tp1"]
    assert rows["bf16_vs_fp32"][0] == want, rows["bf16_vs_fp32"]


@pytest.mark.slow
def test_cpu_dry_end_to_end_table_json_and_exit_code(tmp_path):
    """The whole command as a user runs it: torchrun with 2 gloo ranks, every check, the table and the JSON."""
    out = tmp_path / "st.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    r = subprocess.run(
        [sys.executable, "-m", "cptkit.cli", "selftest", "--cpu-dry", "--nproc", "2", "--workdir", str(tmp_path),
         "--json", str(out), "--recipe", "recipes/swallowcode_exp1.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads(out.read_text())
    status = {c["check"]: c["status"] for c in doc["checks"]}
    assert status == {
        "versions": "INFO",
        "allreduce_intra": "INFO",
        "te_vs_local": "SKIP",
        "tp2_vs_tp1": "PASS",
        "bf16_vs_fp32": "PASS",
        "dist_opt_resume": "SKIP",
        "convert_verify_tp2": "PASS",
        "throughput": "INFO",
    }
    assert doc["ok"] is True and doc["meta"]["world_size"] == 2
    assert "8 checks, 0 failed" in r.stdout and "anchor NeMo 24.09" in r.stdout


def test_rerun_under_torchrun_keeps_every_option_for_cptkit():
    """Started by hand, selftest re-runs itself under torchrun; torchrun's parser must leave our options alone (it
    took `--nproc` for its own `--nproc-per-node` once)."""
    import argparse

    from torch.distributed.run import get_args_parser

    from cptkit.selftest.cli import _torchrun

    args = argparse.Namespace(workdir="/w", recipe="recipes/x.yaml", json="/w/s.json", only="versions,throughput",
                              min_busbw_intra=100.0, min_busbw_inter=10.0, allreduce_mib=64, cpu_dry=True)  # fmt: skip
    cmd = _torchrun(args, 4)
    parsed = get_args_parser().parse_args(cmd[3:])
    assert parsed.nproc_per_node == "4" and parsed.module and parsed.training_script == "cptkit.cli"
    assert parsed.training_script_args == cmd[cmd.index("cptkit.cli") + 1 :]
    assert parsed.training_script_args[3:5] == ["--recipe", "recipes/x.yaml"] and "--cpu-dry" in cmd
