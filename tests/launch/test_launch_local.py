"""The `local` profile end to end: torchrun starts 2 ranks of the stand-in trainer; SIGTERM to the job script makes it
checkpoint (torchrun itself ignores the signal, its workers save); `cptkit launch --submit` resumes it to the end on
the same loss as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from jobscript_util import FAKE, times_started, uninterrupted_loss, wait_for_checkpoint, write_recipe
from launchtest_util import ROOT

from cptkit.cli import main


def test_local_torchrun_preempt_and_resume(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    recipe = write_recipe(tmp_path, run, train_iters=40)
    profile = tmp_path / "local.yaml"
    profile.write_text((ROOT / "launch" / "local.yaml").read_text() + f"cptkit: {sys.executable} {FAKE}\n")
    monkeypatch.setenv("CPTKIT_LOCAL_GPUS", "2")
    monkeypatch.setenv("FAKE_SECONDS_PER_ITER", "0.1")
    monkeypatch.setenv("PATH", f"{sys.prefix}/bin:{os.environ['PATH']}")  # torchrun
    monkeypatch.chdir(tmp_path)
    assert main(["launch", "train", str(recipe), "parallel.num_gpus=2", "--cluster", str(profile), "--dry-run"]) == 0
    out = capsys.readouterr().out
    script = out.split("\n", 1)[1].split("### submit")[0]
    assert 'torchrun --standalone --nnodes=1 --nproc-per-node="$GPUS_PER_NODE" --no-python' in script

    proc = subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for_checkpoint(run, proc)
    proc.send_signal(signal.SIGTERM)  # what a scheduler does on pre-emption
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "got SIGTERM" in out and "saved iteration" in out and "run the script again to resume" in out
    saved = int((run / "checkpoints" / "latest_checkpointed_iteration.txt").read_text())
    assert 0 < saved < 40 and not (run / "COMPLETED").exists()
    ranks = {json.loads((run / "env" / f"rank-{r}.json").read_text())["RANK"] for r in (0, 1)}
    assert ranks == {"0", "1"}

    assert main(["launch", "train", str(recipe), "parallel.num_gpus=2", "--cluster", str(profile), "--submit"]) == 0
    entry = json.loads((run / "jobs.jsonl").read_text().splitlines()[-1])
    assert entry["scheduler"] == "local" and entry["exit_code"] == 0
    assert times_started(run) == 1
    assert json.loads((run / "COMPLETED").read_text())["loss"] == uninterrupted_loss(tmp_path, train_iters=40)
